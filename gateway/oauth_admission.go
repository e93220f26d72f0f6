package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
)

// mcpResourcePath returns the MCP route whose protected-resource metadata covers the
// request path: the path itself, except that the legacy SSE message endpoint belongs to the
// SSE stream it posts into (/mcp/sse/messages -> /mcp/sse).
func mcpResourcePath(p string) string {
	p = strings.TrimSuffix(p, "/")
	if strings.HasSuffix(p, "/mcp/sse/messages") {
		return strings.TrimSuffix(p, "/messages")
	}
	return p
}

// oauthScopes returns the scopes a caller needs on MCP routes: the configured ones, else
// oauth.DefaultScopes.
func (s *Server) oauthScopes() []string {
	if len(s.cfg.OAuth.Scopes) > 0 {
		return s.cfg.OAuth.Scopes
	}
	return oauth.DefaultScopes
}

// passthroughOwnRoute returns the oauth_passthrough server whose own route r is aimed at,
// or nil.
func (s *Server) passthroughOwnRoute(r *http.Request) *store.MCPServer {
	if s.oauth == nil {
		return nil
	}
	name, ok := ownServerRoute(strings.TrimSuffix(r.URL.Path, "/"))
	if !ok {
		return nil
	}
	srv := s.reg.Load().byName[name]
	if srv == nil || !srv.OAuth.Passthrough {
		return nil
	}
	return srv
}

// upstreamToken reports whether the credential that admission refused with err is a token
// for a pass-through upstream rather than a gateway credential: it came in Authorization
// (not an API-key header), is not shaped like a gateway key or gateway-issued token, and was
// refused only as unknown (401). A blocked or forbidden gateway credential (403) stays
// refused.
func upstreamToken(r *http.Request, err error) bool {
	cred, src := credential(r)
	if src != oauth.CredentialAuthorization {
		return false
	}
	var he *Error
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		return false
	}
	return oauth.ForwardAuthorization(true, oauth.CredentialNone, "Bearer "+cred)
}

// checkAudience refuses a gateway-issued access token on a route outside its RFC 8707
// audience (the resource it was granted for): a token for /github/mcp does not open
// /slack/mcp. A token granted for the gateway's public URL covers every route.
func (s *Server) checkAudience(r *http.Request, p *Principal) error {
	if p.Kind != KindOAuth || p.Audience == "" || s.oauth == nil {
		return nil
	}
	want := s.oauth.res.ResourceURL(mcpResourcePath(r.URL.Path))
	g := oauth.Grant{Resource: p.Audience}
	if g.Covers(want) {
		return nil
	}
	return &Error{Status: http.StatusUnauthorized, Type: "invalid_token", Param: "api_key",
		Message: fmt.Sprintf("the token was issued for %s, not %s: get a token for this resource", p.Audience, want)}
}

// checkServerAccess refuses a recognised caller on an MCP route naming servers it may not
// use (403, which refuse turns into an insufficient_scope challenge). Servers that do not
// exist are left to the MCP handler (404). It returns r prepared by identityRequest when it
// needed that view, so the MCP handler does not compute it again.
func (s *Server) checkServerAccess(r *http.Request, p *Principal) (*http.Request, error) {
	if p.Kind == KindAnonymous || p.Kind == KindMaster {
		return r, nil
	}
	names := routeServers(r.URL.Path)
	if len(names) == 0 {
		return r, nil
	}
	// The same caller view (network scope, toolset) that the MCP handler will apply.
	r, err := s.identityRequest(r)
	if err != nil {
		return nil, err
	}
	reg := s.reg.Load()
	for _, name := range names {
		if reg.byName[name] == nil {
			continue
		}
		if !(authorizer{s}).AllowServer(r.Context(), name) {
			return nil, &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "server",
				Message: fmt.Sprintf("%s may not use MCP server %q", p.subject(), name)}
		}
	}
	return r, nil
}

// routeServers returns the servers an MCP route names: /{name}/mcp, /mcp/{name} or
// /mcp/{a,b}. The aggregate routes name none.
func routeServers(p string) []string {
	p = strings.TrimSuffix(p, "/")
	if name, ok := ownServerRoute(p); ok {
		return []string{name}
	}
	rest, ok := strings.CutPrefix(p, "/mcp/")
	if !ok || strings.Contains(rest, "/") || !strings.Contains(rest, ",") {
		return nil
	}
	var out []string
	for _, n := range strings.Split(rest, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
