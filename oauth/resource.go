package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// WellKnownResource is the RFC 9728 well-known path prefix.
const WellKnownResource = "/.well-known/oauth-protected-resource"

// DefaultScopes are the scopes the gateway advertises when none are configured.
var DefaultScopes = []string{"mcp"}

// ResourceMetadata is an RFC 9728 protected-resource metadata document.
type ResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// PassthroughMetadata serves an upstream's own protected-resource metadata at the
// well-known URL of a pass-through server's routes. See Passthrough.
type PassthroughMetadata interface {
	// ResourceMetadata returns the metadata document to serve for routePath, and whether
	// routePath belongs to a pass-through server at all. An error means the upstream has
	// none (the handler answers 502).
	ResourceMetadata(ctx context.Context, routePath string) (doc []byte, ok bool, err error)
}

// ResourceConfig configures a Resource.
type ResourceConfig struct {
	// PublicURL is the gateway's external base URL, with its root path if it has one, e.g.
	// "https://gw.example.com" or "https://example.com/toolgate". Required.
	PublicURL string
	// AuthorizationServers are the issuers clients may get tokens from. If nil, the gateway
	// itself (PublicURL).
	AuthorizationServers []string
	// ScopesSupported are advertised and put in challenges. If nil, DefaultScopes.
	ScopesSupported []string
	// ResourceName and ResourceDocumentation are optional RFC 9728 fields.
	ResourceName          string
	ResourceDocumentation string
	// IsMCPPath reports whether a route path (below the root path, e.g. "/mcp/github") is an
	// MCP route with its own metadata. If nil, DefaultIsMCPPath.
	IsMCPPath func(routePath string) bool
	// Passthrough serves upstream metadata for pass-through servers' routes. If nil, every
	// route gets the gateway's own metadata.
	Passthrough PassthroughMetadata
}

// DefaultIsMCPPath accepts /mcp, /mcp/{servers}, /{server}/mcp, /sse, /{server}/sse and
// /mcp/{server}/sse.
func DefaultIsMCPPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") || strings.HasSuffix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) > 3 {
		return false
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return false
		}
	}
	first, last := segs[0], segs[len(segs)-1]
	switch {
	case len(segs) == 1:
		return first == "mcp" || first == "sse"
	case first == "mcp" && len(segs) == 2:
		return true
	case last == "mcp" || last == "sse":
		return len(segs) == 2 || first == "mcp"
	}
	return false
}

// Resource is the gateway as an OAuth protected resource: it serves RFC 9728 metadata for
// every MCP route and builds the WWW-Authenticate challenges. It is safe for concurrent use.
type Resource struct {
	cfg    ResourceConfig
	base   *url.URL // PublicURL, normalized, no trailing slash
	origin string   // scheme://host
	root   string   // root path, "" or "/toolgate"
}

// NewResource validates cfg and returns a Resource. It does no I/O.
func NewResource(cfg ResourceConfig) (*Resource, error) {
	base, err := parsePublicURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if cfg.AuthorizationServers == nil {
		cfg.AuthorizationServers = []string{base.String()}
	}
	if cfg.ScopesSupported == nil {
		cfg.ScopesSupported = DefaultScopes
	}
	if cfg.IsMCPPath == nil {
		cfg.IsMCPPath = DefaultIsMCPPath
	}
	return &Resource{cfg: cfg, base: base, origin: base.Scheme + "://" + base.Host, root: base.Path}, nil
}

// parsePublicURL checks and normalizes a public base URL: absolute http(s), no query or
// fragment, lowercase scheme and host, no trailing slash.
func parsePublicURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("oauth: public URL is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("oauth: public URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("oauth: public URL %q must be an absolute http(s) URL without query or fragment", s)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// RoutePath returns the path of an MCP route below the root path: requestPath itself
// when the proxy in front strips the root path, else requestPath without it.
func (r *Resource) RoutePath(requestPath string) string {
	if r.root != "" && (requestPath == r.root || strings.HasPrefix(requestPath, r.root+"/")) {
		return strings.TrimPrefix(requestPath, r.root)
	}
	return requestPath
}

// ResourceURL is the canonical resource identifier of the route at requestPath: the
// public URL plus the route path. An empty route gives the public URL.
func (r *Resource) ResourceURL(requestPath string) string {
	rp := strings.TrimRight(r.RoutePath(requestPath), "/")
	return r.base.String() + rp
}

// MetadataURL is the absolute RFC 9728 metadata URL of the route at requestPath: the
// well-known prefix inserted between the origin and the resource's path.
func (r *Resource) MetadataURL(requestPath string) string {
	rp := strings.TrimRight(r.RoutePath(requestPath), "/")
	return r.origin + WellKnownResource + r.root + rp
}

// Metadata returns the gateway's metadata document for the route at requestPath.
func (r *Resource) Metadata(requestPath string) *ResourceMetadata {
	return &ResourceMetadata{
		Resource:               r.ResourceURL(requestPath),
		AuthorizationServers:   r.cfg.AuthorizationServers,
		ScopesSupported:        r.cfg.ScopesSupported,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           r.cfg.ResourceName,
		ResourceDocumentation:  r.cfg.ResourceDocumentation,
	}
}

// Challenge returns the WWW-Authenticate value for a 401 on the route at requestPath.
// cause is why admission failed: nil (no credential) gives a bare challenge; an *Error
// with code invalid_token adds error and error_description (RFC 6750 §3.1).
func (r *Resource) Challenge(requestPath string, cause error) string {
	params := [][2]string{{"resource_metadata", r.MetadataURL(requestPath)}}
	if len(r.cfg.ScopesSupported) > 0 {
		params = append(params, [2]string{"scope", strings.Join(r.cfg.ScopesSupported, " ")})
	}
	var e *Error
	if errors.As(cause, &e) && e.Code == CodeInvalidToken {
		params = append(params, [2]string{"error", e.Code}, [2]string{"error_description", e.Description})
	}
	return bearerChallenge(params)
}

// InsufficientScope returns the WWW-Authenticate value for a 403 on the route at
// requestPath: error="insufficient_scope" with the scopes the request needs (include the
// ones already granted, SEP-835).
func (r *Resource) InsufficientScope(requestPath string, scopes []string, description string) string {
	params := [][2]string{{"error", CodeInsufficientScope}}
	if len(scopes) > 0 {
		params = append(params, [2]string{"scope", strings.Join(scopes, " ")})
	}
	params = append(params, [2]string{"resource_metadata", r.MetadataURL(requestPath)})
	if description != "" {
		params = append(params, [2]string{"error_description", description})
	}
	return bearerChallenge(params)
}

// bearerChallenge formats `Bearer k="v", ...` with quoted-string escaping.
func bearerChallenge(params [][2]string) string {
	var b strings.Builder
	b.WriteString("Bearer ")
	for i, p := range params {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p[0])
		b.WriteString("=")
		b.WriteString(quote(p[1]))
	}
	return b.String()
}

// quote makes an RFC 9110 quoted-string, dropping characters it cannot carry.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ServeHTTP serves the metadata at /.well-known/oauth-protected-resource (the root
// resource, i.e. the whole gateway) and /.well-known/oauth-protected-resource{root}{route}
// for every MCP route. It also answers when a proxy keeps the root path in front
// ({root}/.well-known/...). Unknown routes get 404.
func (r *Resource) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	corsHeaders(w)
	w.Header().Set("Cache-Control", "no-store")
	switch req.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	i := strings.Index(req.URL.Path, WellKnownResource)
	if i < 0 {
		http.NotFound(w, req)
		return
	}
	rest := req.URL.Path[i+len(WellKnownResource):]
	route := r.RoutePath(rest)
	if rest != "" && (route == "" || route == "/") {
		route = "" // the root resource, named with its root path
	}
	if route != "" && !r.cfg.IsMCPPath(route) {
		http.NotFound(w, req)
		return
	}
	if route != "" && r.cfg.Passthrough != nil {
		doc, ok, err := r.cfg.Passthrough.ResourceMetadata(req.Context(), route)
		if ok {
			if err != nil {
				writeJSON(w, http.StatusBadGateway, map[string]string{
					"error": CodeServerError, "error_description": "the upstream server publishes no protected-resource metadata"})
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
			w.Write(doc)
			return
		}
	}
	writeJSON(w, http.StatusOK, r.Metadata(route))
}

func corsHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
