package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
)

// Setting names.
const settingMasterKeyHash = "master_key_sha256"

// routeClass says who may reach a route.
type routeClass int

const (
	classAdmin  routeClass = iota // admins only; the default for anything not classified
	classPublic                   // anyone, no credential needed
	classUser                     // any valid principal; the handler decides what it may do
	classMCP                      // any valid principal; anonymous on keyless servers' own routes
)

func (c routeClass) String() string {
	switch c {
	case classPublic:
		return "public"
	case classUser:
		return "user"
	case classMCP:
		return "mcp"
	default:
		return "admin"
	}
}

// routeRule classifies a path: exactly, or as a whole-segment prefix (path itself and
// anything below path + "/").
type routeRule struct {
	path   string
	prefix bool
	class  routeClass
}

// builtinRules are the gateway's own classifications. Others add theirs with addRouteRule.
var builtinRules = []routeRule{
	{"/health/liveliness", false, classPublic},
	{"/health/liveness", false, classPublic},
	{"/health/readiness", false, classPublic},
	{"/health/readiness/details", false, classUser},
	{"/.well-known", true, classPublic},
	{"/openapi.json", false, classPublic},
	{"/mcp", true, classMCP},
	{"/mcp-rest", true, classUser},
	{"/v1/mcp/tools", false, classUser},
	{"/v1", true, classAdmin},
}

// addRouteRule classifies path (and, with prefix, everything below it) as class. The
// identity, oauth and llm route functions call it for routes that are not admin-only,
// e.g. s.addRouteRule("/key/generate", false, classUser) or s.addRouteRule("/token", false,
// classPublic). Call it only from New (the route functions); it is not safe afterwards.
func (s *Server) addRouteRule(path string, prefix bool, class routeClass) {
	s.rules = append(s.rules, routeRule{path: path, prefix: prefix, class: class})
}

// classify returns the class of a request path. It looks only at the path from the request
// line, never at Host. Exact rules win over prefix rules, longer prefixes over shorter;
// /{name}/mcp is an MCP route; everything else, and any path that is not in
// clean form, is admin-only (fail closed).
func (s *Server) classify(r *http.Request) routeClass {
	p := r.URL.Path
	if p == "" || p[0] != '/' || strings.Contains(strings.ToLower(r.URL.RawPath), "%2f") {
		return classAdmin
	}
	if p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/") {
		return classAdmin
	}
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	best, bestLen := classAdmin, -1
	for _, rule := range s.rules {
		if !rule.prefix && rule.path == p {
			return rule.class
		}
		if rule.prefix && hasSegmentPrefix(p, rule.path) && len(rule.path) > bestLen {
			best, bestLen = rule.class, len(rule.path)
		}
	}
	if bestLen >= 0 {
		return best
	}
	if name, ok := ownServerRoute(p); ok && name != "" {
		return classMCP
	}
	return classAdmin
}

// hasSegmentPrefix reports whether p is prefix or lies below it, segment-wise:
// "/mcp" and "/mcp/x" have prefix "/mcp"; "/mcpx" does not.
func hasSegmentPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// ownServerRoute returns the server named by a single-server MCP route, /mcp/{name} or
// /{name}/mcp. p is clean and has no trailing slash.
func ownServerRoute(p string) (string, bool) {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) != 2 {
		return "", false
	}
	switch {
	case segs[0] == "mcp" && segs[1] != "mcp" && segs[1] != "sse" && !strings.Contains(segs[1], ","):
		return segs[1], true
	case segs[1] == "mcp" && segs[0] != "mcp" && segs[0] != "v1":
		return segs[0], true
	}
	return "", false
}

// credential returns the caller's gateway credential and where admission found it:
// x-toolgate-api-key, then x-litellm-api-key, then Authorization: Bearer. The API-key
// headers come first so that a caller can send its gateway key there and keep
// Authorization for an oauth_passthrough upstream's own token. On /v1/messages (and its
// count_tokens), Anthropic's
// x-api-key counts too (after the others), because Anthropic's SDKs and Claude Code send
// their key there; elsewhere it may be meant for an upstream and is ignored.
func credential(r *http.Request) (string, oauth.CredentialSource) {
	keyHeaders := [3]string{"X-Toolgate-Api-Key", "X-Litellm-Api-Key"}
	if (r.URL.Path == "/v1/messages" || r.URL.Path == "/v1/messages/count_tokens") && r.Header.Get("Authorization") == "" {
		keyHeaders[2] = "X-Api-Key"
	}
	for _, h := range keyHeaders {
		if h == "" {
			break
		}
		if k := strings.TrimSpace(r.Header.Get(h)); k != "" {
			if len(k) > 7 && strings.EqualFold(k[:7], "bearer ") {
				k = strings.TrimSpace(k[7:])
			}
			return k, oauth.CredentialAPIKeyHeader
		}
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		if tok := strings.TrimSpace(a[7:]); tok != "" {
			return tok, oauth.CredentialAuthorization
		}
	}
	return "", oauth.CredentialNone
}

// hashKey is the hex SHA-256 under which keys are stored.
func hashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hexString(sum[:])
}

// hexString is hex.EncodeToString for up to 32 bytes, with one allocation instead of two.
func hexString(b []byte) string {
	var buf [64]byte
	return string(buf[:hex.Encode(buf[:], b)])
}

// TokenAuthenticator turns a bearer token that is not a toolgate key into a principal: an
// OAuth access token or an external JWT. It returns (nil, nil) when the token is not of its
// kind, and an *Error (401) when it is but is invalid or expired.
type TokenAuthenticator func(ctx context.Context, token string) (*Principal, error)

// addTokenAuthenticator registers a authenticator tried after the master key and before
// virtual keys. Call it only from New (the route functions).
func (s *Server) addTokenAuthenticator(a TokenAuthenticator) {
	s.tokenAuth = append(s.tokenAuth, a)
}

// authenticate returns the principal for r's credential, nil when there is none, or an
// *Error saying why the credential was refused.
func (s *Server) authenticate(r *http.Request) (*Principal, error) {
	cred, _ := credential(r)
	if cred == "" {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(cred))
	s.mu.Lock()
	master := s.masterHash
	s.mu.Unlock()
	if len(master) == sha256.Size && subtle.ConstantTimeCompare(sum[:], master) == 1 {
		return &Principal{Kind: KindMaster, Admin: true, Subject: "master_key"}, nil
	}
	for _, a := range s.tokenAuth {
		p, err := a(r.Context(), cred)
		if err != nil {
			return nil, err
		}
		if p != nil {
			return p, nil
		}
	}
	return s.keyPrincipal(r.Context(), hexString(sum[:]))
}

// keyPrincipal resolves a virtual key by hash through the cache.
func (s *Server) keyPrincipal(ctx context.Context, hash string) (*Principal, error) {
	p, ok := s.keys.Get(hash)
	s.metrics.cache.WithLabelValues("key", hitMiss(ok)).Inc()
	if !ok {
		var err error
		p, err = s.loadKey(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &Error{Status: http.StatusUnauthorized, Type: "auth_error", Param: "api_key",
				Message: "invalid API key: no such key (send the master key or a virtual key)"}
		}
		if err != nil {
			return nil, fmt.Errorf("look up key: %w", err)
		}
		s.keys.Add(hash, p)
	}
	k := p.Key
	if k.Expires != nil && !s.now().Before(*k.Expires) {
		return nil, &Error{Status: http.StatusUnauthorized, Type: "expired_key", Param: "api_key",
			Message: fmt.Sprintf("API key expired at %s", k.Expires.UTC().Format("2006-01-02T15:04:05Z"))}
	}
	if k.Blocked {
		return nil, &Error{Status: http.StatusForbidden, Type: "blocked_key", Param: "api_key",
			Message: "API key is blocked"}
	}
	if p.Team != nil && p.Team.Blocked {
		return nil, &Error{Status: http.StatusForbidden, Type: "blocked_team", Param: "api_key",
			Message: fmt.Sprintf("the key's team %s is blocked", p.Team.ID)}
	}
	return p, nil
}

// loadKey reads a key and its user, team and org. The principal it returns is shared by
// every request in the cache's TTL and must not be modified.
func (s *Server) loadKey(ctx context.Context, hash string) (*Principal, error) {
	k, err := s.store.KeyByHash(ctx, hash, s.now())
	if err != nil {
		return nil, err
	}
	p := &Principal{Kind: KindKey, Key: k, Subject: "key:" + k.ID}
	if k.UserID != "" {
		u, err := s.store.User(ctx, k.UserID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		p.User = u
		p.Admin = u != nil && u.Role == store.RoleProxyAdmin
	}
	if k.TeamID != "" {
		t, err := s.store.Team(ctx, k.TeamID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		p.Team = t
	}
	orgID := k.OrgID
	if orgID == "" && p.Team != nil {
		orgID = p.Team.OrgID
	}
	if orgID != "" {
		o, err := s.store.Org(ctx, orgID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		p.Org = o
	}
	return p, nil
}

// invalidateKey drops a key from the admission cache. The identity routes call it after
// they update, block, unblock, regenerate or delete the key with that hash.
func (s *Server) invalidateKey(hash string) {
	s.keys.Remove(hash)
}

// invalidateAllKeys empties the admission cache; for changes that affect many keys at once
// (a user's role, a team blocked, an org deleted).
func (s *Server) invalidateAllKeys() {
	s.keys.Purge()
}

// admit authenticates the request, checks its route class and passes it on with the
// principal in its context.
//
// On an oauth_passthrough server's own routes (/{name}/mcp, /mcp/{name}) a bearer token
// that is no gateway credential is the upstream's: the request is admitted anonymously and
// proxied with it (see servePassthrough). With no credential at all it gets the 401
// challenge; a recognised gateway credential that is refused keeps its 401/403.
func (s *Server) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := r.Context().Value(requestStateKey{}).(*requestState)
		serve := func(r *http.Request) {
			next.ServeHTTP(w, r)
			if st != nil {
				st.pattern = r.Pattern
			}
		}
		class := s.classify(r)
		if class == classPublic {
			serve(r)
			return
		}
		pt := s.passthroughOwnRoute(r)
		p, err := s.authenticate(r)
		if err != nil && pt != nil && upstreamToken(r, err) {
			p, err = &Principal{Kind: KindAnonymous, Subject: "anonymous"}, nil
		}
		if err == nil && p != nil && class == classMCP {
			err = s.checkAudience(r, p)
		}
		if err != nil {
			s.refuse(w, r, class, err)
			return
		}
		if p == nil && r.URL.Path == "/metrics" && s.cfg.MetricsPublic {
			serve(r)
			return
		}
		if p == nil && class == classMCP {
			if name, ok := ownServerRoute(strings.TrimSuffix(r.URL.Path, "/")); ok && s.isKeyless(name) {
				p = &Principal{Kind: KindAnonymous, Subject: "anonymous"}
			}
		}
		if p == nil {
			msg := "no credential: send Authorization: Bearer <key> (or x-litellm-api-key)"
			if r.URL.Path == "/metrics" {
				msg = "/metrics needs an admin key; set general_settings.require_auth_for_metrics_endpoint: false to serve it without one"
			}
			s.refuse(w, r, class, &Error{Status: http.StatusUnauthorized, Type: "auth_error", Param: "api_key", Message: msg})
			return
		}
		if class == classAdmin && !p.Admin {
			s.refuse(w, r, class, &Error{Status: http.StatusForbidden, Type: "permission_error",
				Message: "this route needs an admin key (the master key or a proxy_admin user's key)"})
			return
		}
		r = r.WithContext(WithPrincipal(r.Context(), p))
		if class == classMCP {
			r2, err := s.checkServerAccess(r, p)
			if err != nil {
				s.refuse(w, r, class, err)
				return
			}
			r = r2
		}
		if st != nil {
			st.principal = p
		}
		if pt != nil {
			s.servePassthrough(w, r, pt)
			if st != nil {
				st.pattern = "passthrough"
			}
			return
		}
		serve(r)
	})
}

// refuse writes an admission error. On MCP routes a 401 carries the OAuth challenge and a
// 403 the insufficient_scope one, when discovery is configured.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, class routeClass, err error) {
	var he *Error
	if errors.As(err, &he) && class == classMCP {
		switch {
		case he.Status == http.StatusUnauthorized && s.challenge != nil:
			if c := s.challenge(r); c != "" {
				w.Header().Set("WWW-Authenticate", c)
			}
		case he.Status == http.StatusForbidden && he.Type == "permission_error":
			if c := s.insufficientScope(r, s.oauthScopes(), he.Message); c != "" {
				w.Header().Set("WWW-Authenticate", c)
			}
		}
	}
	s.writeError(w, r, err)
}

// newMasterKey returns a fresh master key.
func newMasterKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "sk-" + hex.EncodeToString(b[:])
}
