package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// newOAuthGateway is newTestGateway with OAuth mounted from cfg; PublicURL is set to the
// test server's URL.
func newOAuthGateway(t *testing.T, cfg OAuthConfig) *testGateway {
	t.Helper()
	db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := httptest.NewUnstartedServer(nil)
	// A PublicURL of "/root" in cfg means the gateway is published below that root path.
	cfg.PublicURL = "http://" + ts.Listener.Addr().String() + cfg.PublicURL
	cfg.Fetch.AllowLoopback = true
	logs := &syncBuffer{}
	s, err := New(Config{Store: db, MasterKey: testMasterKey, Logger: newTestLogger(logs), KeyCacheTTL: time.Minute,
		OAuth: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &testGateway{s: s, db: db, url: ts.URL, logs: logs}
}

func TestOAuthDiscoveryAndChallenge(t *testing.T) {
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	for _, path := range []string{"/mcp", "/mcp/github", "/github/mcp"} {
		r := g.do(t, "POST", path, "{}")
		want := `Bearer resource_metadata="` + g.url + `/.well-known/oauth-protected-resource` + path + `", scope="mcp"`
		if r.status != 401 || r.header.Get("WWW-Authenticate") != want {
			t.Errorf("POST %s: got %d %q, want 401 %q", path, r.status, r.header.Get("WWW-Authenticate"), want)
		}
		r = g.do(t, "GET", "/.well-known/oauth-protected-resource"+path, nil)
		var md oauth.ResourceMetadata
		json.Unmarshal(r.body, &md)
		if r.status != 200 || md.Resource != g.url+path || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != g.url {
			t.Errorf("PRM %s: got %d %+v", path, r.status, md)
		}
	}
	want := `Bearer error="insufficient_scope", scope="mcp admin", resource_metadata="` + g.url + `/.well-known/oauth-protected-resource/mcp", error_description="needs admin"`
	if got := g.s.insufficientScope(httptest.NewRequest("POST", "/mcp", nil), []string{"mcp", "admin"}, "needs admin"); got != want {
		t.Errorf("insufficientScope: got %s, want %s", got, want)
	}
	r := g.do(t, "GET", "/.well-known/oauth-authorization-server", nil)
	if r.status != 200 || r.json(t)["issuer"] != g.url {
		t.Errorf("AS metadata: got %d %s", r.status, r.body)
	}
}

func TestOAuthLoginWithVirtualKey(t *testing.T) {
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	key := g.addKey(t, "sk-user-0001", nil)

	redirect := "http://localhost:33333/callback"
	r := g.do(t, "POST", "/register", map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "client_name": "Claude Code (gw)"})
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	clientID := r.json(t)["client_id"].(string)
	verifier, challenge := oauthtest.PKCE()
	au := g.url + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID},
		"redirect_uri": {"http://localhost:40404/callback"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
		"state": {"s"}, "resource": {g.url + "/mcp"}}.Encode()
	loc, err := oauthtest.Login(oauthtest.Browser(), au, "sk-user-0001")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(g.url+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {clientID}, "redirect_uri": {"http://localhost:40404/callback"}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	at, _ := tok["access_token"].(string)
	if resp.StatusCode != 200 || at == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer "+at); r.status != 200 {
		t.Fatalf("tools with the access token: got %d %s", r.status, r.body)
	}
	// The login page refuses a wrong key and the master key cannot be guessed.
	if _, err := oauthtest.Login(oauthtest.Browser(), au, "sk-wrong"); err == nil {
		t.Errorf("login with a wrong key succeeded")
	}
	// Blocking the key revokes the tokens issued for it.
	key.Blocked = true
	if err := g.db.UpdateKey(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	g.s.invalidateKey(key.TokenHash)
	r = g.do(t, "POST", "/mcp", "{}", "Authorization", "Bearer "+at)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Errorf("token of a blocked key: got %d %s, want 401 with a challenge", r.status, r.body)
	}
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer tgat_forged"); r.status != 401 {
		t.Errorf("forged token: got %d, want 401", r.status)
	}
}

func TestJWTAdmission(t *testing.T) {
	is := oauthtest.NewIssuer(t)
	g := newOAuthGateway(t, OAuthConfig{JWT: oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{
		Issuer: is.URL, JWKSURL: is.JWKSURL(), Audience: "toolgate",
		ClaimMapping: oauth.ClaimMapping{TeamIDs: "groups"}}}}, JWTKeyClaim: "key_alias"})
	if err := g.db.CreateUser(context.Background(), &store.User{ID: "u-1"}); err != nil {
		t.Fatal(err)
	}
	good := is.Claims("u-1", "toolgate")
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer "+is.Sign(t, good)); r.status != 200 {
		t.Errorf("valid JWT: got %d %s", r.status, r.body)
	}
	// A JWT naming a key by alias is admitted as that key: a blocked key refuses it.
	g.addKey(t, "sk-bot-0001", func(k *store.Key) { k.KeyAlias = "ci-bot"; k.Blocked = true })
	mapped := is.Claims("u-1", "toolgate")
	mapped["key_alias"] = "ci-bot"
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer "+is.Sign(t, mapped)); r.status != 403 || r.errorField(t, "type") != "blocked_key" {
		t.Errorf("JWT mapped to a blocked key: got %d %s, want 403 blocked_key", r.status, r.body)
	}
	mapped["key_alias"] = "no-such-key"
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer "+is.Sign(t, mapped)); r.status != 200 {
		t.Errorf("JWT naming no key falls back to the user mapping: got %d %s", r.status, r.body)
	}
	cases := []struct {
		name    string
		mod     func(map[string]any)
		errType string
	}{
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, "expired_token"},
		{"wrong aud", func(c map[string]any) { c["aud"] = "other" }, "auth_error"},
		{"unknown issuer", func(c map[string]any) { c["iss"] = "https://evil.example" }, "auth_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := is.Claims("u-1", "toolgate")
			tc.mod(c)
			r := g.do(t, "POST", "/mcp", "{}", "Authorization", "Bearer "+is.Sign(t, c))
			if r.status != 401 || r.errorField(t, "type") != tc.errType {
				t.Errorf("got %d %s, want 401 %s", r.status, r.body, tc.errType)
			}
		})
	}
}

func TestIdPSubjects(t *testing.T) {
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	ctx := context.Background()
	if err := g.db.CreateUser(ctx, &store.User{ID: "ann", Role: store.RoleProxyAdmin}); err != nil {
		t.Fatal(err)
	}
	sub, err := g.s.idpSubject(ctx, &oauth.Principal{UserID: "ann"})
	if err != nil || sub != "user:ann" {
		t.Fatalf("idpSubject: %q %v", sub, err)
	}
	if _, err := g.s.idpSubject(ctx, &oauth.Principal{UserID: "mallory"}); err == nil {
		t.Errorf("unknown user was mapped")
	}
	p, err := g.s.subjectPrincipal(ctx, sub)
	if err != nil || p.User == nil || p.User.ID != "ann" || !p.Admin || p.Kind != KindOAuth {
		t.Errorf("subjectPrincipal: %+v %v", p, err)
	}
	if _, err := g.s.subjectPrincipal(ctx, "user:gone"); err == nil {
		t.Errorf("deleted user still resolves")
	}
}
