package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"

	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
)

// TB is the part of testing.TB the test helpers use (the package does not import testing).
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// TestAuthServer is an auto-approving OAuth authorization server for tests: real RFC 8414
// metadata, RFC 7591 registration, /authorize (approves at once as Subject, no login page),
// /token with PKCE S256, refresh rotation and client_credentials, plus RFC 9728 metadata
// for its own /mcp. It plays an IdP or an upstream MCP server's authorization server.
type TestAuthServer struct {
	Server   *httptest.Server
	URL      string // issuer
	AS       *Server
	Resource *Resource
	Store    *oauthtest.MemStore
	// Subject is who every authorization request is approved as. Default "test-user".
	Subject string
}

// NewTestAuthServer starts a TestAuthServer and registers its shutdown with tb. It lives
// here rather than in oauthtest because it is built from Server (oauthtest may not import
// oauth).
func NewTestAuthServer(tb TB) *TestAuthServer {
	tb.Helper()
	a := &TestAuthServer{Store: oauthtest.NewMemStore(), Subject: "test-user"}
	mux := http.NewServeMux()
	a.Server = httptest.NewServer(mux)
	a.URL = a.Server.URL
	tb.Cleanup(a.Server.Close)
	res, err := NewResource(ResourceConfig{PublicURL: a.URL})
	if err != nil {
		tb.Fatal(err)
	}
	as, err := NewServer(ServerConfig{
		Resource:                res,
		Store:                   a.Store,
		AutoApprove:             func(*http.Request) (string, bool) { return a.Subject, true },
		ClientMetadataDocuments: true,
		HTTPClient:              NewHTTPClient(FetchConfig{AllowLoopback: true}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	a.AS, a.Resource = as, res
	mux.Handle(WellKnownResource, res)
	mux.Handle(WellKnownResource+"/", res)
	for _, p := range as.Paths() {
		mux.Handle(p, as)
	}
	return a
}

// AuthorizationURL is the server's endpoints.
func (a *TestAuthServer) AuthorizationURL() string { return a.URL + "/authorize" }

// TokenURL is the server's token endpoint.
func (a *TestAuthServer) TokenURL() string { return a.URL + "/token" }

// AddClient registers a client directly: public when secret is empty, else confidential
// with every grant type.
func (a *TestAuthServer) AddClient(tb TB, id, secret string, redirectURIs ...string) {
	tb.Helper()
	c := &store.OAuthClient{ID: id, RedirectURIs: redirectURIs, ResponseTypes: []string{"code"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, TokenEndpointAuthMethod: "none"}
	if secret != "" {
		h := sha256.Sum256([]byte(secret))
		c.SecretHash = hex.EncodeToString(h[:])
		c.TokenEndpointAuthMethod = "client_secret_basic"
		c.GrantTypes = append(c.GrantTypes, GrantClientCredentials)
	}
	if err := a.Store.CreateOAuthClient(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
}

// Introspect resolves an access token the server issued.
func (a *TestAuthServer) Introspect(token string) (*Grant, error) {
	return a.AS.Introspect(context.Background(), token)
}
