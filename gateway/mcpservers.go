package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
)

// The management API for upstream MCP servers, in LiteLLM's shapes
// (NewMCPServerRequest in, LiteLLM_MCPServerTable out).

var (
	serverNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	serverIDRE   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// serverRequest is the body of POST and PUT /v1/mcp/server. Pointer fields distinguish
// "absent" (keep, on PUT) from a value. Credentials: absent keeps, null clears.
type serverRequest struct {
	ServerID                  *string            `json:"server_id"`
	ServerName                *string            `json:"server_name"`
	Alias                     *string            `json:"alias"`
	Description               *string            `json:"description"`
	URL                       *string            `json:"url"`
	Transport                 *string            `json:"transport"`
	SpecVersion               *string            `json:"spec_version"` // accepted for LiteLLM compatibility; negotiated instead
	AuthType                  *string            `json:"auth_type"`
	Credentials               json.RawMessage    `json:"credentials"`
	MCPInfo                   *mcpInfo           `json:"mcp_info"`
	MCPAccessGroups           *[]string          `json:"mcp_access_groups"`
	AllowedTools              *[]string          `json:"allowed_tools"`
	ToolNameToDisplayName     *map[string]string `json:"tool_name_to_display_name"`
	ToolNameToDescription     *map[string]string `json:"tool_name_to_description"`
	ExtraHeaders              *[]string          `json:"extra_headers"`
	StaticHeaders             *map[string]string `json:"static_headers"`
	AuthorizationURL          *string            `json:"authorization_url"`
	TokenURL                  *string            `json:"token_url"`
	RegistrationURL           *string            `json:"registration_url"`
	OAuth2Flow                *string            `json:"oauth2_flow"`
	AllowAllKeys              *bool              `json:"allow_all_keys"`
	AvailableOnPublicInternet *bool              `json:"available_on_public_internet"`
	DelegateAuthToUpstream    *bool              `json:"delegate_auth_to_upstream"`
	OAuthPassthrough          *bool              `json:"oauth_passthrough"`
	AllowKeyless              *bool              `json:"allow_keyless"`
	// stdio servers are not supported; these are accepted only empty.
	Command *string           `json:"command"`
	Args    []string          `json:"args"`
	Env     map[string]string `json:"env"`
}

// mcpInfo is LiteLLM's mcp_info.
type mcpInfo struct {
	ServerName        string       `json:"server_name,omitempty"`
	Description       string       `json:"description,omitempty"`
	LogoURL           string       `json:"logo_url,omitempty"`
	MCPServerCostInfo *mcpCostInfo `json:"mcp_server_cost_info,omitempty"`
}

type mcpCostInfo struct {
	DefaultCostPerQuery    float64            `json:"default_cost_per_query"`
	ToolNameToCostPerQuery map[string]float64 `json:"tool_name_to_cost_per_query,omitempty"`
}

// credentialsRequest is LiteLLM's MCPCredentials.
type credentialsRequest struct {
	AuthValue    *string   `json:"auth_value"`
	ClientID     *string   `json:"client_id"`
	ClientSecret *string   `json:"client_secret"`
	Scopes       *[]string `json:"scopes"`
}

// serverResponse is LiteLLM_MCPServerTable as toolgate returns it: credentials are never
// included (credentials_set names the fields that hold a value) and sensitive static
// header values are masked.
type serverResponse struct {
	ServerID                  string            `json:"server_id"`
	ServerName                string            `json:"server_name"`
	Alias                     *string           `json:"alias"`
	Description               *string           `json:"description"`
	URL                       string            `json:"url"`
	Transport                 string            `json:"transport"`
	AuthType                  string            `json:"auth_type"`
	Credentials               any               `json:"credentials"`
	CredentialsSet            []string          `json:"credentials_set"`
	CreatedAt                 *time.Time        `json:"created_at"`
	CreatedBy                 string            `json:"created_by"`
	UpdatedAt                 *time.Time        `json:"updated_at"`
	UpdatedBy                 string            `json:"updated_by"`
	Teams                     []any             `json:"teams"`
	MCPAccessGroups           []string          `json:"mcp_access_groups"`
	AllowedTools              []string          `json:"allowed_tools"`
	ToolNameToDisplayName     map[string]string `json:"tool_name_to_display_name"`
	ToolNameToDescription     map[string]string `json:"tool_name_to_description"`
	ExtraHeaders              []string          `json:"extra_headers"`
	MCPInfo                   mcpInfo           `json:"mcp_info"`
	StaticHeaders             map[string]string `json:"static_headers"`
	Status                    string            `json:"status"`
	LastHealthCheck           *time.Time        `json:"last_health_check"`
	HealthCheckError          *string           `json:"health_check_error"`
	AuthorizationURL          *string           `json:"authorization_url"`
	TokenURL                  *string           `json:"token_url"`
	RegistrationURL           *string           `json:"registration_url"`
	OAuth2Flow                *string           `json:"oauth2_flow"`
	AllowAllKeys              bool              `json:"allow_all_keys"`
	AvailableOnPublicInternet bool              `json:"available_on_public_internet"`
	DelegateAuthToUpstream    bool              `json:"delegate_auth_to_upstream"`
	OAuthPassthrough          bool              `json:"oauth_passthrough"`
	AllowKeyless              bool              `json:"allow_keyless"`
	Source                    string            `json:"source"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// serverView renders srv for the API, with live health from the pool when it has any.
func (s *Server) serverView(srv *store.MCPServer) serverResponse {
	v := serverResponse{
		ServerID:                  srv.ID,
		ServerName:                srv.Name,
		Alias:                     strPtr(srv.Alias),
		Description:               strPtr(srv.Description),
		URL:                       redactURL(srv.URL),
		Transport:                 srv.Transport,
		AuthType:                  srv.AuthType,
		CredentialsSet:            []string{},
		CreatedAt:                 timePtr(srv.CreatedAt),
		CreatedBy:                 srv.CreatedBy,
		UpdatedAt:                 timePtr(srv.UpdatedAt),
		UpdatedBy:                 srv.UpdatedBy,
		Teams:                     []any{},
		MCPAccessGroups:           orEmpty(srv.AccessGroups),
		AllowedTools:              orEmpty(srv.AllowedTools),
		ToolNameToDisplayName:     srv.ToolNameToDisplayName,
		ToolNameToDescription:     srv.ToolNameToDescription,
		ExtraHeaders:              orEmpty(srv.ExtraHeaders),
		MCPInfo:                   mcpInfo{ServerName: srv.Name, Description: srv.Description},
		StaticHeaders:             redactHeaders(srv.StaticHeaders),
		Status:                    srv.HealthStatus,
		LastHealthCheck:           timePtr(srv.LastHealthCheck),
		HealthCheckError:          strPtr(srv.HealthError),
		AuthorizationURL:          strPtr(srv.OAuth.AuthorizationURL),
		TokenURL:                  strPtr(srv.OAuth.TokenURL),
		RegistrationURL:           strPtr(srv.OAuth.RegistrationURL),
		OAuth2Flow:                strPtr(srv.OAuth.GrantType),
		AllowAllKeys:              srv.AllowAllKeys,
		AvailableOnPublicInternet: srv.AvailableOnPublicInternet,
		DelegateAuthToUpstream:    srv.OAuth.DelegateAuthToUpstream,
		OAuthPassthrough:          srv.OAuth.Passthrough,
		AllowKeyless:              srv.AllowKeyless,
		Source:                    srv.Source,
	}
	if v.AuthType == "" {
		v.AuthType = store.AuthNone
	}
	if srv.Cost.DefaultCostPerQuery != 0 || len(srv.Cost.ToolNameToCostPerQuery) > 0 {
		v.MCPInfo.MCPServerCostInfo = &mcpCostInfo{srv.Cost.DefaultCostPerQuery, srv.Cost.ToolNameToCostPerQuery}
	}
	if len(srv.Credentials) > 0 {
		if c, err := s.openCredentials(srv); err == nil {
			v.CredentialsSet = append(v.CredentialsSet, c.set()...)
		} else {
			v.CredentialsSet = append(v.CredentialsSet, "unreadable")
		}
	}
	if srv.OAuth.ClientID != "" {
		v.CredentialsSet = append(v.CredentialsSet, "client_id")
	}
	if len(srv.OAuth.Scopes) > 0 {
		v.CredentialsSet = append(v.CredentialsSet, "scopes")
	}
	if h, ok := s.pool.Health()[srv.Name]; ok && !h.CheckedAt.IsZero() {
		v.Status = store.HealthUnhealthy
		if h.Healthy {
			v.Status = store.HealthHealthy
		}
		v.LastHealthCheck = timePtr(h.CheckedAt)
		v.HealthCheckError = strPtr(h.Err)
	}
	if v.Status == "" {
		v.Status = store.HealthUnknown
	}
	return v
}

// sensitiveHeader reports whether a header's value must not be shown.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"auth", "key", "token", "secret", "cookie", "password", "session", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

func redactHeaders(h map[string]string) map[string]string {
	if h == nil {
		return map[string]string{}
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if sensitiveHeader(k) {
			v = "[redacted]"
		}
		out[k] = v
	}
	return out
}

// redactURL hides a password in a URL's userinfo and values of query parameters that look
// like secrets.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	changed := false
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "redacted")
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if sensitiveHeader(k) {
				q.Set(k, "redacted")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return raw
	}
	return u.String()
}

// apply validates req and writes it onto srv. creating says whether this is a POST (required
// fields must be present) or a PUT (absent fields keep their value). It returns the
// credentials to seal: nil means "keep the stored ones", a non-nil empty value "clear".
func (s *Server) apply(req *serverRequest, srv *store.MCPServer, creating bool) (*credentials, error) {
	if req.Command != nil && *req.Command != "" || len(req.Args) > 0 || len(req.Env) > 0 {
		param := "command"
		if req.Command == nil || *req.Command == "" {
			param = "args"
			if len(req.Args) == 0 {
				param = "env"
			}
		}
		return nil, badRequest(param, "stdio servers are not supported: run the server behind an HTTP transport and register its url")
	}
	if req.ServerName != nil {
		if !serverNameRE.MatchString(*req.ServerName) {
			return nil, badRequest("server_name", "server_name %q must be 1-64 characters from [A-Za-z0-9_]", *req.ServerName)
		}
		srv.Name = *req.ServerName
	} else if creating {
		return nil, badRequest("server_name", "server_name is required")
	}
	if req.Alias != nil {
		if *req.Alias != "" && !serverNameRE.MatchString(*req.Alias) {
			return nil, badRequest("alias", "alias %q must be 1-64 characters from [A-Za-z0-9_]", *req.Alias)
		}
		srv.Alias = *req.Alias
	}
	if req.Description != nil {
		srv.Description = *req.Description
	}
	if req.URL != nil {
		if err := validateUpstreamURL(*req.URL, s.cfg.AllowPrivateUpstreams); err != nil {
			return nil, badRequest("url", "url: %v", err)
		}
		srv.URL = *req.URL
	} else if creating {
		return nil, badRequest("url", "url is required")
	}
	if req.Transport != nil || creating {
		t := ""
		if req.Transport != nil {
			t = *req.Transport
		}
		nt, err := normalizeTransport(t)
		if err != nil {
			return nil, badRequest("transport", "%v", err)
		}
		srv.Transport = nt
	}
	if req.AuthType != nil {
		switch *req.AuthType {
		case "", store.AuthNone:
			srv.AuthType = store.AuthNone
		case store.AuthAPIKey, store.AuthBearer, store.AuthBasic, store.AuthAuthorization, store.AuthOAuth2:
			srv.AuthType = *req.AuthType
		default:
			return nil, badRequest("auth_type", "auth_type %q must be one of none, api_key, bearer_token, basic, authorization, oauth2", *req.AuthType)
		}
	} else if creating {
		srv.AuthType = store.AuthNone
	}
	var creds *credentials
	if len(req.Credentials) > 0 {
		creds = &credentials{}
		if string(req.Credentials) != "null" {
			var cr credentialsRequest
			if err := decodeStrict(req.Credentials, &cr, "credentials."); err != nil {
				return nil, err
			}
			if cr.AuthValue != nil {
				creds.AuthValue = *cr.AuthValue
			}
			if cr.ClientSecret != nil {
				creds.ClientSecret = *cr.ClientSecret
			}
			if cr.ClientID != nil {
				srv.OAuth.ClientID = *cr.ClientID
			}
			if cr.Scopes != nil {
				srv.OAuth.Scopes = *cr.Scopes
			}
			if strings.ContainsAny(creds.AuthValue, "\r\n") {
				return nil, badRequest("credentials.auth_value", "credentials.auth_value must not contain line breaks")
			}
		}
	}
	if req.MCPInfo != nil {
		if req.MCPInfo.Description != "" && req.Description == nil {
			srv.Description = req.MCPInfo.Description
		}
		if c := req.MCPInfo.MCPServerCostInfo; c != nil {
			if c.DefaultCostPerQuery < 0 {
				return nil, badRequest("mcp_info.mcp_server_cost_info.default_cost_per_query", "cost must not be negative")
			}
			for tool, v := range c.ToolNameToCostPerQuery {
				if v < 0 {
					return nil, badRequest("mcp_info.mcp_server_cost_info.tool_name_to_cost_per_query", "cost of %q must not be negative", tool)
				}
			}
			srv.Cost = store.MCPServerCost{DefaultCostPerQuery: c.DefaultCostPerQuery, ToolNameToCostPerQuery: c.ToolNameToCostPerQuery}
		}
	}
	if req.MCPAccessGroups != nil {
		if err := nonEmptyStrings("mcp_access_groups", *req.MCPAccessGroups); err != nil {
			return nil, err
		}
		srv.AccessGroups = *req.MCPAccessGroups
	}
	if req.AllowedTools != nil {
		if err := nonEmptyStrings("allowed_tools", *req.AllowedTools); err != nil {
			return nil, err
		}
		srv.AllowedTools = *req.AllowedTools
	}
	if req.ToolNameToDisplayName != nil {
		srv.ToolNameToDisplayName = *req.ToolNameToDisplayName
	}
	if req.ToolNameToDescription != nil {
		srv.ToolNameToDescription = *req.ToolNameToDescription
	}
	if req.ExtraHeaders != nil {
		for _, h := range *req.ExtraHeaders {
			if !headerNameRE.MatchString(h) {
				return nil, badRequest("extra_headers", "extra_headers: %q is not a valid header name", h)
			}
			if neverForwarded(h) {
				return nil, badRequest("extra_headers", "extra_headers: %q is never forwarded to upstreams", h)
			}
		}
		srv.ExtraHeaders = *req.ExtraHeaders
	}
	if req.StaticHeaders != nil {
		for k, v := range *req.StaticHeaders {
			if !headerNameRE.MatchString(k) {
				return nil, badRequest("static_headers", "static_headers: %q is not a valid header name", k)
			}
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, badRequest("static_headers", "static_headers: value of %q must not contain line breaks", k)
			}
		}
		srv.StaticHeaders = *req.StaticHeaders
	}
	for _, f := range []struct {
		param string
		v     *string
		dst   *string
	}{
		{"authorization_url", req.AuthorizationURL, &srv.OAuth.AuthorizationURL},
		{"token_url", req.TokenURL, &srv.OAuth.TokenURL},
		{"registration_url", req.RegistrationURL, &srv.OAuth.RegistrationURL},
	} {
		if f.v == nil {
			continue
		}
		if *f.v != "" {
			if err := validateUpstreamURL(*f.v, s.cfg.AllowPrivateUpstreams); err != nil {
				return nil, badRequest(f.param, "%s: %v", f.param, err)
			}
		}
		*f.dst = *f.v
	}
	if req.OAuth2Flow != nil {
		switch *req.OAuth2Flow {
		case "", "authorization_code", "client_credentials":
			srv.OAuth.GrantType = *req.OAuth2Flow
		default:
			return nil, badRequest("oauth2_flow", "oauth2_flow %q must be authorization_code or client_credentials", *req.OAuth2Flow)
		}
	}
	if req.AllowAllKeys != nil {
		srv.AllowAllKeys = *req.AllowAllKeys
	}
	if req.AvailableOnPublicInternet != nil {
		srv.AvailableOnPublicInternet = *req.AvailableOnPublicInternet
	} else if creating {
		srv.AvailableOnPublicInternet = true // LiteLLM's default
	}
	if req.DelegateAuthToUpstream != nil {
		srv.OAuth.DelegateAuthToUpstream = *req.DelegateAuthToUpstream
	}
	if req.OAuthPassthrough != nil {
		srv.OAuth.Passthrough = *req.OAuthPassthrough
	}
	if req.AllowKeyless != nil {
		srv.AllowKeyless = *req.AllowKeyless
	}
	return creds, nil
}

func nonEmptyStrings(param string, v []string) error {
	for i, s := range v {
		if strings.TrimSpace(s) == "" {
			return badRequest(param, "%s[%d] is empty", param, i)
		}
	}
	return nil
}

// neverForwarded lists caller headers the upstream pool never forwards.
func neverForwarded(h string) bool {
	switch strings.ToLower(h) {
	case "authorization", "cookie", "x-toolgate-api-key", "x-litellm-api-key", "mcp-session-id", "host",
		"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
		"transfer-encoding", "upgrade", "content-length":
		return true
	}
	return false
}

// normalizeTransport maps LiteLLM's spellings to store.TransportHTTP or TransportSSE.
func normalizeTransport(t string) (string, error) {
	switch strings.ToLower(t) {
	case "", "http", "streamable_http", "streamable-http", "streamablehttp":
		return store.TransportHTTP, nil
	case "sse":
		return store.TransportSSE, nil
	case "stdio":
		return "", errors.New("transport stdio is not supported: use http or sse")
	}
	return "", fmt.Errorf("transport %q must be http or sse", t)
}

// metadataHosts are cloud metadata endpoints reachable by name.
var metadataHosts = []string{"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}

// validateUpstreamURL accepts http and https URLs with a host, and refuses link-local and
// cloud metadata addresses unless allowPrivate.
func validateUpstreamURL(raw string, allowPrivate bool) error {
	if raw == "" {
		return errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q not allowed: use http or https", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not carry credentials (user:password@): use credentials and auth_type")
	}
	if u.Fragment != "" {
		return errors.New("must not have a fragment")
	}
	if allowPrivate {
		return nil
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if slices.Contains(metadataHosts, h) {
		return fmt.Errorf("host %s is a cloud metadata endpoint (allow with general_settings.allow_private_upstreams)", host)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		// The same rule the upstream dialer applies after every DNS resolution.
		if why := forbiddenDial(ip); why != "" {
			return fmt.Errorf("address %s is %s (allow with general_settings.allow_private_upstreams)", host, why)
		}
	}
	return nil
}

// validateConfigServer checks a server from the config file.
func validateConfigServer(srv *store.MCPServer, allowPrivate bool) error {
	if !serverNameRE.MatchString(srv.Name) {
		return fmt.Errorf("%q: name must be 1-64 characters from [A-Za-z0-9_]", srv.Name)
	}
	if err := validateUpstreamURL(srv.URL, allowPrivate); err != nil {
		return fmt.Errorf("%s: url: %w", srv.Name, err)
	}
	if _, err := normalizeTransport(srv.Transport); err != nil {
		return fmt.Errorf("%s: %w", srv.Name, err)
	}
	return nil
}

// writeCredentials seals creds onto srv (nil keeps the stored value).
func (s *Server) writeCredentials(srv *store.MCPServer, creds *credentials) error {
	if creds == nil {
		return nil
	}
	if len(creds.set()) == 0 {
		srv.Credentials = nil
		return nil
	}
	box, err := s.sealBox("credentials")
	if err != nil {
		return err
	}
	b, err := json.Marshal(creds)
	if err != nil {
		return err
	}
	srv.Credentials, err = box.Seal(b)
	return err
}

// configServer returns the config-file server with that id or name, or nil.
func (s *Server) configServer(idOrName string) *store.MCPServer {
	reg := s.reg.Load()
	if srv := reg.byID[idOrName]; srv != nil && srv.Source == "config" {
		return srv
	}
	if srv := reg.byName[idOrName]; srv != nil && srv.Source == "config" {
		return srv
	}
	return nil
}

func readOnly(param, name string) error {
	return errorf(http.StatusConflict, "conflict_error", param,
		"server %q comes from the config file and is read-only through the API: edit the file and reload (SIGHUP)", name)
}

func (s *Server) createServer(w http.ResponseWriter, r *http.Request) error {
	var req serverRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	srv := &store.MCPServer{Source: "db"}
	if req.ServerID != nil && *req.ServerID != "" {
		if !serverIDRE.MatchString(*req.ServerID) {
			return badRequest("server_id", "server_id %q must be 1-128 characters from [A-Za-z0-9_.:-]", *req.ServerID)
		}
		srv.ID = *req.ServerID
	}
	creds, err := s.apply(&req, srv, true)
	if err != nil {
		return err
	}
	if s.configServer(srv.Name) != nil {
		return errorf(http.StatusConflict, "conflict_error", "server_name", "server_name %q is taken by a config-file server", srv.Name)
	}
	if srv.ID != "" && s.configServer(srv.ID) != nil {
		return errorf(http.StatusConflict, "conflict_error", "server_id", "server_id %q is taken by a config-file server", srv.ID)
	}
	if err := s.writeCredentials(srv, creds); err != nil {
		return err
	}
	p := PrincipalFrom(r.Context())
	srv.CreatedBy, srv.UpdatedBy = p.subject(), p.subject()
	if err := s.store.CreateMCPServer(r.Context(), srv); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if _, err2 := s.store.MCPServerByName(r.Context(), srv.Name); err2 == nil {
				return errorf(http.StatusConflict, "conflict_error", "server_name", "server_name %q already exists", srv.Name)
			}
			return errorf(http.StatusConflict, "conflict_error", "server_id", "server_id %q already exists", srv.ID)
		}
		return fmt.Errorf("create mcp server: %w", err)
	}
	view := s.serverView(srv)
	s.recordAudit(r.Context(), "create", "mcp_server", srv.ID, nil, view)
	if err := s.reload(r.Context()); err != nil {
		return fmt.Errorf("reload registry: %w", err)
	}
	writeJSON(w, http.StatusCreated, view)
	return nil
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) error {
	reg := s.reg.Load()
	out := make([]serverResponse, 0, len(reg.servers))
	dbServers, err := s.store.MCPServers(r.Context())
	if err != nil {
		return fmt.Errorf("list mcp servers: %w", err)
	}
	for _, srv := range reg.servers {
		if srv.Source == "config" {
			out = append(out, s.serverView(srv))
		}
	}
	for _, srv := range dbServers {
		srv.Source = "db"
		out = append(out, s.serverView(srv))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lookupServer finds a server by id (or, for convenience, name) among config and database servers.
func (s *Server) lookupServer(ctx context.Context, id string) (*store.MCPServer, error) {
	if srv := s.configServer(id); srv != nil {
		return srv, nil
	}
	srv, err := s.store.MCPServer(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		srv, err = s.store.MCPServerByName(ctx, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get mcp server: %w", err)
	}
	srv.Source = "db"
	return srv, nil
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) error {
	srv, err := s.lookupServer(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.serverView(srv))
	return nil
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request) error {
	var req serverRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.ServerID == nil || *req.ServerID == "" {
		return badRequest("server_id", "server_id is required")
	}
	if srv := s.configServer(*req.ServerID); srv != nil {
		return readOnly("server_id", srv.Name)
	}
	old, err := s.store.MCPServer(r.Context(), *req.ServerID)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", *req.ServerID)
	}
	if err != nil {
		return fmt.Errorf("get mcp server: %w", err)
	}
	old.Source = "db"
	before := s.serverView(old)
	srv := *old
	creds, err := s.apply(&req, &srv, false)
	if err != nil {
		return err
	}
	if srv.Name != old.Name && s.configServer(srv.Name) != nil {
		return errorf(http.StatusConflict, "conflict_error", "server_name", "server_name %q is taken by a config-file server", srv.Name)
	}
	if err := s.writeCredentials(&srv, creds); err != nil {
		return err
	}
	srv.UpdatedBy = PrincipalFrom(r.Context()).subject()
	if err := s.store.UpdateMCPServer(r.Context(), &srv); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "conflict_error", "server_name", "server_name %q already exists", srv.Name)
		}
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", srv.ID)
		}
		return fmt.Errorf("update mcp server: %w", err)
	}
	view := s.serverView(&srv)
	s.recordAudit(r.Context(), "update", "mcp_server", srv.ID, before, view)
	if err := s.reload(r.Context()); err != nil {
		return fmt.Errorf("reload registry: %w", err)
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if srv := s.configServer(id); srv != nil {
		return readOnly("server_id", srv.Name)
	}
	old, err := s.store.MCPServer(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", id)
	}
	if err != nil {
		return fmt.Errorf("get mcp server: %w", err)
	}
	old.Source = "db"
	before := s.serverView(old)
	if err := s.store.DeleteMCPServer(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", id)
		}
		return fmt.Errorf("delete mcp server: %w", err)
	}
	s.recordAudit(r.Context(), "delete", "mcp_server", id, before, nil)
	if err := s.reload(r.Context()); err != nil {
		return fmt.Errorf("reload registry: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "deleted mcp server " + old.Name, "server_id": id})
	return nil
}

// recordAudit appends an audit entry. before and after are rendered as JSON and must hold no
// secrets (serverView's output does not). A failure is logged, not returned: the change
// itself has happened.
func (s *Server) recordAudit(ctx context.Context, action, objectType, objectID string, before, after any) {
	e := &store.AuditEntry{
		At:         s.now(),
		Actor:      PrincipalFrom(ctx).subject(),
		Action:     action,
		ObjectType: objectType,
		ObjectID:   objectID,
	}
	if before != nil {
		e.Before, _ = json.Marshal(before)
	}
	if after != nil {
		e.After, _ = json.Marshal(after)
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "append audit entry", "request_id", requestIDFrom(ctx),
			"action", action, "object_type", objectType, "object_id", objectID, "err", err)
	}
}
