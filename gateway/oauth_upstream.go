package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

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

// oauthStates holds each Server's oauthState. Interim: Server has no field for it (the
// gateway work owns the struct); replace with a field `oauth *oauthState`.
var oauthStates sync.Map // *Server -> *oauthState

func (s *Server) oauthState() *oauthState {
	st, _ := oauthStates.Load(s)
	o, _ := st.(*oauthState)
	return o
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
	st := s.oauthState()
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

// credentialSource says where admission found r's gateway credential.
func credentialSource(r *http.Request) oauth.CredentialSource {
	if r.Header.Get("X-Toolgate-Api-Key") != "" || r.Header.Get("X-Litellm-Api-Key") != "" {
		return oauth.CredentialAPIKeyHeader
	}
	if p := PrincipalFrom(r.Context()); p != nil && p.Kind != KindAnonymous {
		return oauth.CredentialAuthorization
	}
	return oauth.CredentialNone
}

// insufficientScope returns the WWW-Authenticate value for a 403 on an MCP route when the
// caller's token lacks scopes (SEP-835 step-up): error="insufficient_scope", the scopes
// needed (pass the granted ones too) and the route's resource_metadata. It returns "" when
// discovery is not configured.
func (s *Server) insufficientScope(r *http.Request, scopes []string, description string) string {
	st := s.oauthState()
	if st == nil {
		return ""
	}
	return st.res.InsufficientScope(r.URL.Path, scopes, description)
}
