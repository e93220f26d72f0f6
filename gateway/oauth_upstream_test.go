package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"testing"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
)

func TestUpstreamOAuthThroughGateway(t *testing.T) {
	as := oauth.NewTestAuthServer(t)
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	g.addKey(t, "sk-user-0002", nil)
	ctx := context.Background()
	sealed, err := g.s.box.Seal([]byte(`{"client_secret":"m2m-secret"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*store.MCPServer{
		{Name: "gh", URL: as.URL + "/mcp", Transport: store.TransportHTTP, AuthType: store.AuthOAuth2,
			OAuth: store.MCPServerOAuth{ClientID: "gw", AuthorizationURL: as.AuthorizationURL(), TokenURL: as.TokenURL(), Scopes: []string{"mcp"}}},
		{Name: "m2m", URL: as.URL + "/mcp", Transport: store.TransportHTTP, AuthType: store.AuthOAuth2, Credentials: sealed,
			OAuth: store.MCPServerOAuth{ClientID: "m2m", TokenURL: as.TokenURL(), GrantType: oauth.GrantClientCredentials}},
	} {
		if err := g.db.CreateMCPServer(ctx, srv); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	as.AddClient(t, "gw", "", g.url+oauth.CallbackPath)
	as.AddClient(t, "m2m", "m2m-secret")

	key, err := g.db.KeyByHash(ctx, hashKey("sk-user-0002"), g.s.now())
	if err != nil {
		t.Fatal(err)
	}
	callerCtx := WithPrincipal(ctx, &Principal{Kind: KindKey, Subject: "key:" + key.ID})
	_, err = g.s.upstreamAuthHeaders(callerCtx, "gh")
	var are *oauth.AuthRequiredError
	if !errors.As(err, &are) {
		t.Fatalf("before connecting: got %v, want AuthRequiredError", err)
	}
	// The user opens the connect URL, signs in with their key, and is sent through the
	// upstream's (auto-approving) authorization server back to the gateway's callback.
	b := oauthtest.Browser()
	resp, err := b.Get(are.ConnectURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("connect page: %d %s", resp.StatusCode, body)
	}
	resp, err = b.PostForm(g.url+oauth.ConnectPath, url.Values{"server": {"gh"}, "csrf": {string(m[1])}, "key": {"sk-user-0002"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
		if resp, err = b.Get(resp.Header.Get("Location")); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if resp.StatusCode != 200 {
		t.Fatalf("connect flow ended with %d", resp.StatusCode)
	}
	h, err := g.s.upstreamAuthHeaders(callerCtx, "gh")
	if err != nil {
		t.Fatalf("after connecting: %v", err)
	}
	if _, err := as.Introspect(h.Get("Authorization")[len("Bearer "):]); err != nil {
		t.Errorf("upstream token: %v", err)
	}
	other := WithPrincipal(ctx, &Principal{Kind: KindKey, Subject: "key:someone-else"})
	if _, err := g.s.upstreamAuthHeaders(other, "gh"); !errors.As(err, &are) {
		t.Errorf("another caller: got %v, want AuthRequiredError", err)
	}
	h, err = g.s.upstreamAuthHeaders(other, "m2m")
	if err != nil || h.Get("Authorization") == "" {
		t.Errorf("client credentials: %v %v", h, err)
	}
}

func TestPassthroughThroughGateway(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-protected-resource/mcp" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"resource":"x","authorization_servers":["https://idp.example"]}`)
			return
		}
		http.NotFound(w, r)
	}))
	defer up.Close()
	g := newOAuthGateway(t, OAuthConfig{AuthorizationServer: true})
	ctx := context.Background()
	for _, srv := range []*store.MCPServer{
		{Name: "pt", URL: up.URL + "/mcp", Transport: store.TransportHTTP, OAuth: store.MCPServerOAuth{Passthrough: true}},
		{Name: "ptnone", URL: up.URL + "/other", Transport: store.TransportHTTP, OAuth: store.MCPServerOAuth{Passthrough: true}},
		{Name: "plain", URL: up.URL + "/mcp", Transport: store.TransportHTTP},
	} {
		if err := g.db.CreateMCPServer(ctx, srv); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	r := g.do(t, "GET", "/.well-known/oauth-protected-resource/pt/mcp", nil)
	var md map[string]any
	json.Unmarshal(r.body, &md)
	if r.status != 200 || md["resource"] != g.url+"/pt/mcp" || md["authorization_servers"].([]any)[0] != "https://idp.example" {
		t.Errorf("pass-through metadata: %d %s", r.status, r.body)
	}
	if r := g.do(t, "GET", "/.well-known/oauth-protected-resource/mcp/ptnone", nil); r.status != http.StatusBadGateway {
		t.Errorf("pass-through without upstream metadata: got %d, want 502", r.status)
	}
	r = g.do(t, "GET", "/.well-known/oauth-protected-resource/plain/mcp", nil)
	json.Unmarshal(r.body, &md)
	if md["authorization_servers"].([]any)[0] != g.url {
		t.Errorf("plain server gets the gateway's own metadata: %s", r.body)
	}

	req := func(headers ...string) *http.Request {
		rq := httptest.NewRequest("POST", "/pt/mcp", nil)
		for i := 0; i < len(headers); i += 2 {
			rq.Header.Set(headers[i], headers[i+1])
		}
		return rq
	}
	keyed := req("Authorization", "Bearer upstream-tok", "X-Toolgate-Api-Key", "sk-x")
	keyed = keyed.WithContext(WithPrincipal(keyed.Context(), &Principal{Kind: KindKey, Subject: "key:1"}))
	anon := req("Authorization", "Bearer upstream-tok")
	anon = anon.WithContext(WithPrincipal(anon.Context(), &Principal{Kind: KindAnonymous, Subject: "anonymous"}))
	inAuth := req("Authorization", "Bearer sk-x")
	inAuth = inAuth.WithContext(WithPrincipal(inAuth.Context(), &Principal{Kind: KindKey, Subject: "key:1"}))
	cases := []struct {
		name   string
		r      *http.Request
		server string
		want   bool
	}{
		{"key in x-toolgate-api-key", keyed, "pt", true},
		{"no gateway credential (admitted anonymously)", anon, "pt", true},
		{"not admitted at all", req("Authorization", "Bearer upstream-tok"), "pt", false},
		{"key in Authorization", inAuth, "pt", false},
		{"not a pass-through server", keyed, "plain", false},
		{"unknown server", keyed, "nope", false},
	}
	for _, tc := range cases {
		if got := g.s.forwardCallerAuthorization(tc.r, tc.server); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
