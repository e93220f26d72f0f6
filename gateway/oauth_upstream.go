package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/gateway/upstream"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
)

// oauthState is what mountOAuth builds and the request paths use later.
type oauthState struct {
	res *oauth.Resource
	as  *oauth.Server      // nil unless the authorization server is on
	up  *oauth.Upstream    // nil without a public URL or a sealing key
	pt  *oauth.Passthrough // nil without a public URL
}

// mountUpstreamOAuth adds the upstream connect/callback endpoints and pass-through metadata.
func (s *Server) mountUpstreamOAuth(mux *http.ServeMux, cfg OAuthConfig, st *oauthState, client *http.Client) error {
	pt, err := oauth.NewPassthrough(oauth.PassthroughConfig{Route: s.passthroughRoute, Resource: st.res, HTTPClient: client})
	if err != nil {
		return err
	}
	st.pt = pt
	s.onReload = append(s.onReload, func(servers []*store.MCPServer) {
		for _, srv := range servers {
			pt.Forget(srv.Name)
		}
	})
	if s.box == nil {
		return nil // no sealing key: per-user upstream tokens cannot be stored
	}
	up, err := oauth.NewUpstream(oauth.UpstreamConfig{
		Store:      s.store,
		Sealer:     s.box,
		Keys:       oauthKeys{s},
		PublicURL:  cfg.PublicURL,
		Servers:    s.upstreamOAuthServer,
		HTTPClient: client,
		Logger:     s.log.With("component", "oauth-upstream"),
		Now:        s.now,
	})
	if err != nil {
		return err
	}
	st.up = up
	for _, p := range []string{oauth.ConnectPath, oauth.CallbackPath} {
		mux.Handle(p, up)
		s.addRouteRule(p, false, classPublic)
	}
	return nil
}

// passthroughRoute maps a server's own route (/{name}/mcp, /mcp/{name}) to that server
// when it is an oauth_passthrough server.
func (s *Server) passthroughRoute(_ context.Context, routePath string) (string, string, bool) {
	name, ok := ownServerRoute(strings.TrimSuffix(routePath, "/"))
	if !ok {
		return "", "", false
	}
	srv := s.reg.Load().byName[name]
	if srv == nil || !srv.OAuth.Passthrough {
		return "", "", false
	}
	return srv.Name, srv.URL, true
}

// upstreamOAuthServer resolves a server ID or name to its OAuth client settings.
func (s *Server) upstreamOAuthServer(_ context.Context, id string) (oauth.UpstreamServer, error) {
	reg := s.reg.Load()
	srv := reg.byID[id]
	if srv == nil {
		srv = reg.byName[id]
	}
	if srv == nil || srv.AuthType != store.AuthOAuth2 {
		return oauth.UpstreamServer{}, fmt.Errorf("server %q: %w", id, store.ErrNotFound)
	}
	creds, err := s.openCredentials(srv)
	if err != nil {
		return oauth.UpstreamServer{}, err
	}
	grant := srv.OAuth.GrantType
	if grant == "" {
		grant = oauth.GrantAuthorizationCode
	}
	return oauth.UpstreamServer{ID: srv.ID, Name: srv.Name, ClientID: srv.OAuth.ClientID, ClientSecret: creds.ClientSecret,
		AuthorizationURL: srv.OAuth.AuthorizationURL, TokenURL: srv.OAuth.TokenURL, Scopes: srv.OAuth.Scopes,
		GrantType: grant, Resource: srv.URL}, nil
}

// errNoUpstreamOAuth means upstream OAuth is not configured (no public URL or no sealing
// key).
var errNoUpstreamOAuth = errors.New("upstream oauth2 needs general_settings.public_url and a salt or master key")

// upstreamAuthHeaders returns the headers that authenticate the caller in ctx at an
// auth_type oauth2 upstream: the caller's own upstream token (per-user flow) or the
// server's client-credentials token. A caller who has not connected yet gets an
// *oauth.AuthRequiredError whose ConnectURL the gateway shows them. The upstream pool calls
// this for every MCP method (tools, prompts, resources, completions) of such a server.
func (s *Server) upstreamAuthHeaders(ctx context.Context, server string) (http.Header, error) {
	st := s.oauth
	if st == nil || st.up == nil {
		return nil, errNoUpstreamOAuth
	}
	srv, err := s.upstreamOAuthServer(ctx, server)
	if err != nil {
		return nil, err
	}
	subject := PrincipalFrom(ctx).subject()
	if srv.GrantType != oauth.GrantClientCredentials && subject == "anonymous" {
		return nil, &Error{Status: http.StatusUnauthorized, Type: "auth_error", Message: "this server needs a signed-in caller"}
	}
	return st.up.Headers(ctx, srv, subject)
}

// forwardCallerAuthorization is the one place that decides whether r's Authorization goes
// to server (oauth_passthrough): see oauth.ForwardAuthorization.
func (s *Server) forwardCallerAuthorization(r *http.Request, server string) bool {
	srv := s.reg.Load().byName[server]
	return oauth.ForwardAuthorization(srv != nil && srv.OAuth.Passthrough, credentialSource(r), r.Header.Get("Authorization"))
}

// credentialSource says where admission found r's gateway credential: an API-key header,
// Authorization (when it admitted the caller), or none (no credential, or an Authorization
// that admission took for a pass-through upstream's token).
func credentialSource(r *http.Request) oauth.CredentialSource {
	_, src := credential(r)
	if src == oauth.CredentialAuthorization {
		if p := PrincipalFrom(r.Context()); p != nil && p.Kind == KindAnonymous {
			return oauth.CredentialNone
		}
	}
	return src
}

// insufficientScope returns the WWW-Authenticate value for a 403 on an MCP route when the
// caller's token lacks scopes (SEP-835 step-up): error="insufficient_scope", the scopes
// needed (pass the granted ones too) and the route's resource_metadata. It returns "" when
// discovery is not configured.
func (s *Server) insufficientScope(r *http.Request, scopes []string, description string) string {
	st := s.oauth
	if st == nil {
		return ""
	}
	return st.res.InsufficientScope(r.URL.Path, scopes, description)
}

// oauthUpstreams is the upstream pool as federation sees it, with the caller's upstream
// OAuth credentials applied: every MCP method (tools, prompts, resources, completions) sent
// to an auth_type oauth2 server carries the caller's own upstream token (authorization
// code flow) or the server's client-credentials token, in a pool client of its own per
// caller. The caller's token for the gateway is never among them.
type oauthUpstreams struct {
	s *Server
	p *upstream.Pool
}

var _ federation.Upstreams = oauthUpstreams{}

// perCallerOAuth reports whether srv is reached with each caller's own upstream token
// (auth_type oauth2, authorization-code flow): federation then lists its tools, prompts
// and resources per caller, with that caller's token (federation.Server.PerCaller).
func perCallerOAuth(srv *store.MCPServer) bool {
	return srv.AuthType == store.AuthOAuth2 && srv.OAuth.GrantType != oauth.GrantClientCredentials
}

// ctx returns ctx carrying server's upstream credential for the caller in ctx, or ctx
// itself for servers that are not oauth2. A caller who has not authorized the upstream
// yet gets a *federation.AuthorizationRequiredError carrying the connect URL (MCP
// clients see it as a URL elicitation, or in the error message), which wraps a 403
// *Error for the REST routes.
func (u oauthUpstreams) ctx(ctx context.Context, server string) (context.Context, error) {
	srv := u.s.reg.Load().byName[server]
	if srv == nil || srv.AuthType != store.AuthOAuth2 {
		return ctx, nil
	}
	h, err := u.s.upstreamAuthHeaders(ctx, server)
	var are *oauth.AuthRequiredError
	if errors.As(err, &are) {
		fe := &federation.AuthorizationRequiredError{Server: server, URL: are.ConnectURL}
		fe.Err = &Error{Status: http.StatusForbidden, Type: "auth_error", Param: "server",
			Message: fe.Error(), Err: are}
		return nil, fe
	}
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(h))
	for k := range h {
		m[k] = h.Get(k)
	}
	id := "oauth2:" + PrincipalFrom(ctx).subject()
	if srv.OAuth.GrantType == oauth.GrantClientCredentials {
		id = "oauth2:client-credentials"
	}
	return upstream.WithCredential(ctx, id, m), nil
}

func (u oauthUpstreams) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.ListTools(ctx, server)
}

func (u oauthUpstreams) CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.CallTool(ctx, server, req, obs)
}

func (u oauthUpstreams) ListResources(ctx context.Context, server string) ([]mcp.Resource, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.ListResources(ctx, server)
}

func (u oauthUpstreams) ListResourceTemplates(ctx context.Context, server string) ([]mcp.ResourceTemplate, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.ListResourceTemplates(ctx, server)
}

func (u oauthUpstreams) ReadResource(ctx context.Context, server string, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.ReadResource(ctx, server, req)
}

func (u oauthUpstreams) ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.ListPrompts(ctx, server)
}

func (u oauthUpstreams) GetPrompt(ctx context.Context, server string, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.GetPrompt(ctx, server, req)
}

func (u oauthUpstreams) Complete(ctx context.Context, server string, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return nil, err
	}
	return u.p.Complete(ctx, server, req)
}
