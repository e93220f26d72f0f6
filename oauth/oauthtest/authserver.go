package oauthtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
)

// AuthServer is an auto-approving OAuth authorization server for tests: real RFC 8414
// metadata, RFC 7591 registration, /authorize (approves at once as Subject, no login page),
// /token with PKCE S256, refresh rotation and client_credentials, plus RFC 9728 metadata
// for its own /mcp. It plays an IdP or an upstream MCP server's authorization server.
type AuthServer struct {
	Server   *httptest.Server
	URL      string // issuer
	AS       *oauth.Server
	Resource *oauth.Resource
	Store    *MemStore
	// Subject is who every authorization request is approved as. Default "test-user".
	Subject string
}

// NewAuthServer starts an AuthServer and registers its shutdown with tb.
func NewAuthServer(tb testing.TB) *AuthServer {
	tb.Helper()
	a := &AuthServer{Store: NewMemStore(), Subject: "test-user"}
	mux := http.NewServeMux()
	a.Server = httptest.NewServer(mux)
	a.URL = a.Server.URL
	tb.Cleanup(a.Server.Close)
	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: a.URL})
	if err != nil {
		tb.Fatal(err)
	}
	as, err := oauth.NewServer(oauth.ServerConfig{
		Resource:                res,
		Store:                   a.Store,
		AutoApprove:             func(*http.Request) (string, bool) { return a.Subject, true },
		ClientMetadataDocuments: true,
		HTTPClient:              oauth.NewHTTPClient(oauth.FetchConfig{AllowLoopback: true}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	a.AS, a.Resource = as, res
	mux.Handle(oauth.WellKnownResource, res)
	mux.Handle(oauth.WellKnownResource+"/", res)
	for _, p := range as.Paths() {
		mux.Handle(p, as)
	}
	return a
}

// AuthorizationURL and TokenURL are the server's endpoints.
func (a *AuthServer) AuthorizationURL() string { return a.URL + "/authorize" }

// TokenURL is the server's token endpoint.
func (a *AuthServer) TokenURL() string { return a.URL + "/token" }

// AddClient registers a client directly: public when secret is empty, else confidential
// with every grant type.
func (a *AuthServer) AddClient(tb testing.TB, id, secret string, redirectURIs ...string) {
	tb.Helper()
	c := &store.OAuthClient{ID: id, RedirectURIs: redirectURIs, ResponseTypes: []string{"code"},
		GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}, TokenEndpointAuthMethod: "none"}
	if secret != "" {
		h := sha256.Sum256([]byte(secret))
		c.SecretHash = hex.EncodeToString(h[:])
		c.TokenEndpointAuthMethod = "client_secret_basic"
		c.GrantTypes = append(c.GrantTypes, oauth.GrantClientCredentials)
	}
	if err := a.Store.CreateOAuthClient(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
}

// Introspect resolves an access token the server issued.
func (a *AuthServer) Introspect(token string) (*oauth.Grant, error) {
	return a.AS.Introspect(context.Background(), token)
}
