package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// issueToken runs the authorization code flow at g's authorization server, signing in with
// secret, for resource, and returns the access token.
func issueToken(t *testing.T, g *testGateway, secret, resource string) string {
	t.Helper()
	const redirect = "http://localhost:40404/callback"
	r := g.do(t, "POST", "/register", map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}})
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	clientID := r.json(t)["client_id"].(string)
	verifier, challenge := oauthtest.PKCE()
	au := g.url + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"s"}, "resource": {resource}}.Encode()
	loc, err := oauthtest.Login(oauthtest.Browser(), au, secret)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(g.url+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {clientID}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "resource": {resource}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok map[string]any
	json.NewDecoder(resp.Body).Decode(&tok)
	at, _ := tok["access_token"].(string)
	if resp.StatusCode != 200 || at == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	return at
}

// TestOAuthChallengeEveryMCPRoute: every unauthenticated request to an MCP route, whatever
// its method or transport, gets 401 with an absolute, path-aware resource_metadata that
// resolves to a metadata document; also when the gateway is published below a root path.
func TestOAuthChallengeEveryMCPRoute(t *testing.T) {
	for _, root := range []string{"", "/toolgate"} {
		g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true, PublicURL: root})
		cases := []struct{ method, path, resource string }{
			{"POST", "/mcp", "/mcp"},
			{"GET", "/mcp", "/mcp"},
			{"DELETE", "/mcp", "/mcp"},
			{"POST", "/mcp/github", "/mcp/github"},
			{"GET", "/github/mcp", "/github/mcp"},
			{"DELETE", "/github/mcp", "/github/mcp"},
			{"GET", "/mcp/sse", "/mcp/sse"},
			{"POST", "/mcp/sse/messages?sessionId=x", "/mcp/sse"},
		}
		for _, tc := range cases {
			r := g.do(t, tc.method, tc.path, "{}")
			meta := g.url + oauth.WellKnownResource + root + tc.resource
			want := `Bearer resource_metadata="` + meta + `", scope="mcp"`
			if r.status != 401 || r.header.Get("WWW-Authenticate") != want {
				t.Errorf("root %q: %s %s: got %d %q, want 401 %q", root, tc.method, tc.path, r.status, r.header.Get("WWW-Authenticate"), want)
				continue
			}
			if !strings.Contains(string(r.body), `"auth_error"`) {
				t.Errorf("%s %s: body %s does not name the problem", tc.method, tc.path, r.body)
			}
			resp, err := http.Get(meta)
			if err != nil {
				t.Fatal(err)
			}
			var md map[string]any
			json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if resp.StatusCode != 200 || md["resource"] != g.url+root+tc.resource {
				t.Errorf("root %q: metadata %s: %d resource %v, want 200 %s", root, meta, resp.StatusCode, md["resource"], g.url+root+tc.resource)
			}
		}
	}
}

// TestOAuthAdmissionRules pins the admission rules around OAuth: API-key headers before
// Authorization, the per-route audience of gateway-issued tokens, 403 insufficient_scope for
// a recognised caller without permission, and tokens dying with their key.
func TestOAuthAdmissionRules(t *testing.T) {
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	ctx := context.Background()
	for _, name := range []string{"alpha", "beta"} {
		if err := g.db.CreateMCPServer(ctx, &store.MCPServer{Name: name, URL: "http://127.0.0.1:1/mcp", Transport: store.TransportHTTP}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	key := g.addKey(t, "sk-alpha-only-0001", func(k *store.Key) { k.Permission.MCPServers = []string{"alpha"} })

	t.Run("api-key header before Authorization", func(t *testing.T) {
		r := g.do(t, "GET", "/v1/mcp/server", nil, "X-Toolgate-Api-Key", testMasterKey, "Authorization", "Bearer someone-elses-token")
		if r.status != 200 {
			t.Errorf("master key in x-toolgate-api-key with a foreign Authorization: got %d %s, want 200", r.status, r.body)
		}
		r = g.do(t, "GET", "/v1/mcp/server", nil, "X-Litellm-Api-Key", "Bearer "+testMasterKey, "Authorization", "Bearer x")
		if r.status != 200 {
			t.Errorf("master key in x-litellm-api-key: got %d %s, want 200", r.status, r.body)
		}
	})

	tok := issueToken(t, g, "sk-alpha-only-0001", g.url+"/alpha/mcp")
	t.Run("audience", func(t *testing.T) {
		init := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
		if r := g.do(t, "POST", "/alpha/mcp", init, "Authorization", "Bearer "+tok); r.status == 401 || r.status == 403 {
			t.Errorf("token on its own route: got %d %s", r.status, r.body)
		}
		r := g.do(t, "POST", "/beta/mcp", init, "Authorization", "Bearer "+tok)
		if r.status != 401 || !strings.Contains(string(r.body), "invalid_token") ||
			!strings.Contains(r.header.Get("WWW-Authenticate"), `resource_metadata="`+g.url+`/.well-known/oauth-protected-resource/beta/mcp"`) {
			t.Errorf("token for /alpha/mcp on /beta/mcp: got %d %s %q, want 401 invalid_token with beta's challenge", r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	})

	t.Run("insufficient_scope", func(t *testing.T) {
		r := g.do(t, "POST", "/mcp/beta", "{}", "Authorization", "Bearer sk-alpha-only-0001")
		wa := r.header.Get("WWW-Authenticate")
		if r.status != 403 || !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="mcp"`) ||
			!strings.Contains(wa, `resource_metadata="`+g.url+`/.well-known/oauth-protected-resource/mcp/beta"`) ||
			!strings.Contains(string(r.body), "beta") {
			t.Errorf("key without beta on /mcp/beta: got %d %s %q, want 403 insufficient_scope", r.status, r.body, wa)
		}
		if r := g.do(t, "POST", "/mcp/alpha,beta", "{}", "Authorization", "Bearer sk-alpha-only-0001"); r.status != 403 {
			t.Errorf("/mcp/alpha,beta: got %d, want 403", r.status)
		}
	})

	t.Run("deleting the key revokes its tokens", func(t *testing.T) {
		if err := g.db.DeleteKey(ctx, key.ID); err != nil {
			t.Fatal(err)
		}
		g.s.invalidateKey(key.TokenHash)
		r := g.do(t, "POST", "/alpha/mcp", "{}", "Authorization", "Bearer "+tok)
		if r.status != 401 || !strings.Contains(string(r.body), "revoked") {
			t.Errorf("token of a deleted key: got %d %s, want 401 revoked", r.status, r.body)
		}
	})
}

// TestOAuthConfigRefusedAtStart: an invalid jwt_auth section stops New instead of starting
// with OAuth off.
func TestOAuthConfigRefusedAtStart(t *testing.T) {
	cases := map[string]oauth.JWTConfig{
		"audience and disable_audience_validation": {Issuers: []oauth.IssuerConfig{{Issuer: "https://idp.example",
			JWKSURL: "https://idp.example/jwks", Audience: "toolgate", DisableAudienceValidation: true}}},
		"no audience":             {Issuers: []oauth.IssuerConfig{{Issuer: "https://idp.example", JWKSURL: "https://idp.example/jwks"}}},
		"global without audience": {JWKSURL: "https://idp.example/jwks"},
	}
	for name, jc := range cases {
		db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(Config{Store: db, OAuth: OAuthConfig{JWT: jc}})
		if err == nil || !strings.Contains(err.Error(), "audience") {
			t.Errorf("%s: New: got %v, want an error about the audience", name, err)
		}
	}
}

// TestPassthroughProxy: on an oauth_passthrough server's own route the caller's upstream
// token reaches the upstream and toolgate credentials never do; upstream 401s are relayed
// with a challenge pointing at the gateway's metadata for the route; no credential gets the
// 401 challenge, and a recognised but blocked key stays 403.
func TestPassthroughProxy(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Case") != "" { // not the pool's own health checks
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
		}
		switch r.Header.Get("Authorization") {
		case "Bearer good-upstream-token":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
		case "Bearer forbidden-upstream-token":
			w.WriteHeader(http.StatusForbidden)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="http://upstream.example/.well-known/oauth-protected-resource/mcp", scope="read"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer up.Close()
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	ctx := context.Background()
	if err := g.db.CreateMCPServer(ctx, &store.MCPServer{Name: "pt", URL: up.URL + "/mcp", Transport: store.TransportHTTP,
		OAuth: store.MCPServerOAuth{Passthrough: true}}); err != nil {
		t.Fatal(err)
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	g.addKey(t, "sk-pt-user-0001", func(k *store.Key) { k.Permission.MCPServers = []string{"pt"} })
	g.addKey(t, "sk-pt-blocked-01", func(k *store.Key) { k.Blocked = true })
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	meta := g.url + "/.well-known/oauth-protected-resource/pt/mcp"

	cases := []struct {
		name       string
		headers    []string
		wantStatus int
		wantAuth   string // Authorization the upstream must see ("" = none, "-" = no request)
		challenge  []string
	}{
		{"upstream token alone", []string{"Authorization", "Bearer good-upstream-token"}, 200, "Bearer good-upstream-token", nil},
		{"key in x-toolgate-api-key", []string{"X-Toolgate-Api-Key", "sk-pt-user-0001", "Authorization", "Bearer good-upstream-token"}, 200, "Bearer good-upstream-token", nil},
		{"key in Authorization", []string{"Authorization", "Bearer sk-pt-user-0001"}, 401, "", []string{`resource_metadata="` + meta + `"`}},
		{"no credential", nil, 401, "-", []string{`resource_metadata="` + meta + `"`}},
		{"upstream refuses the token", []string{"Authorization", "Bearer stale"}, 401, "Bearer stale",
			[]string{`resource_metadata="` + meta + `"`, `error="invalid_token"`, `scope="read"`}},
		{"upstream forbids", []string{"Authorization", "Bearer forbidden-upstream-token"}, 403, "Bearer forbidden-upstream-token",
			[]string{`resource_metadata="` + meta + `"`}},
		{"blocked key", []string{"X-Toolgate-Api-Key", "sk-pt-blocked-01", "Authorization", "Bearer good-upstream-token"}, 403, "-", nil},
	}
	for _, tc := range cases {
		mu.Lock()
		seen = nil
		mu.Unlock()
		r := g.do(t, "POST", "/pt/mcp", body, append(tc.headers, "X-Test-Case", tc.name)...)
		if r.status != tc.wantStatus {
			t.Errorf("%s: got %d %s, want %d", tc.name, r.status, r.body, tc.wantStatus)
		}
		for _, c := range tc.challenge {
			if !strings.Contains(r.header.Get("WWW-Authenticate"), c) {
				t.Errorf("%s: WWW-Authenticate %q lacks %s", tc.name, r.header.Get("WWW-Authenticate"), c)
			}
		}
		if strings.Contains(r.header.Get("WWW-Authenticate"), "upstream.example") {
			t.Errorf("%s: the upstream's own metadata URL reached the client", tc.name)
		}
		mu.Lock()
		got := seen
		mu.Unlock()
		if tc.wantAuth == "-" {
			if len(got) != 0 {
				t.Errorf("%s: the request reached the upstream", tc.name)
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: upstream got %d requests, want 1", tc.name, len(got))
			continue
		}
		if a := got[0].Get("Authorization"); a != tc.wantAuth {
			t.Errorf("%s: upstream saw Authorization %q, want %q", tc.name, a, tc.wantAuth)
		}
		for _, h := range []string{"X-Toolgate-Api-Key", "X-Litellm-Api-Key"} {
			if got[0].Get(h) != "" {
				t.Errorf("%s: upstream saw %s", tc.name, h)
			}
		}
	}
}
