package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

// addKey stores a virtual key with secret and returns it.
func (g *testGateway) addKey(t testing.TB, secret string, mod func(*store.Key)) *store.Key {
	t.Helper()
	k := &store.Key{TokenHash: hashKey(secret), KeyName: "sk-..." + secret[len(secret)-4:]}
	if mod != nil {
		mod(k)
	}
	if err := g.db.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAdmission(t *testing.T) {
	g := newTestGateway(t, nil)
	ctx := context.Background()
	if err := g.db.CreateUser(ctx, &store.User{ID: "boss", Role: store.RoleProxyAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := g.db.CreateUser(ctx, &store.User{ID: "dev", Role: store.RoleInternalUser}); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	g.addKey(t, "sk-user-0001", func(k *store.Key) { k.UserID = "dev"; k.Expires = &future })
	g.addKey(t, "sk-admin-0002", func(k *store.Key) { k.UserID = "boss" })
	g.addKey(t, "sk-expired-0003", func(k *store.Key) { k.Expires = &past })
	g.addKey(t, "sk-blocked-0004", func(k *store.Key) { k.Blocked = true })

	tests := []struct {
		name    string
		path    string
		headers []string
		status  int
		errType string
	}{
		{"no credential", "/v1/mcp/server", nil, 401, "auth_error"},
		{"master bearer", "/v1/mcp/server", []string{"Authorization", "Bearer " + testMasterKey}, 200, ""},
		{"master bearer lowercase scheme", "/v1/mcp/server", []string{"Authorization", "bearer " + testMasterKey}, 200, ""},
		{"master x-litellm-api-key", "/v1/mcp/server", []string{"x-litellm-api-key", testMasterKey}, 200, ""},
		{"master x-toolgate-api-key", "/v1/mcp/server", []string{"x-toolgate-api-key", testMasterKey}, 200, ""},
		{"master without Bearer", "/v1/mcp/server", []string{"Authorization", testMasterKey}, 401, "auth_error"},
		{"unknown key", "/v1/mcp/server", []string{"Authorization", "Bearer sk-nope"}, 401, "auth_error"},
		{"user key on management", "/v1/mcp/server", []string{"Authorization", "Bearer sk-user-0001"}, 403, "permission_error"},
		{"user key on tools", "/v1/mcp/tools", []string{"Authorization", "Bearer sk-user-0001"}, 200, ""},
		{"user key on details", "/health/readiness/details", []string{"x-litellm-api-key", "sk-user-0001"}, 200, ""},
		{"admin user key on management", "/v1/mcp/server", []string{"Authorization", "Bearer sk-admin-0002"}, 200, ""},
		{"expired key", "/v1/mcp/tools", []string{"Authorization", "Bearer sk-expired-0003"}, 401, "expired_key"},
		{"blocked key", "/v1/mcp/tools", []string{"Authorization", "Bearer sk-blocked-0004"}, 403, "blocked_key"},
		{"no credential on /mcp", "/mcp", nil, 401, "auth_error"},
		{"no credential on a server route", "/mcp/some_server", nil, 401, "auth_error"},
		{"no credential on tools", "/v1/mcp/tools", nil, 401, "auth_error"},
		{"public well-known", "/.well-known/nothing-here", nil, 404, "not_found_error"},
		{"unknown route needs admin", "/no/such/route", nil, 401, "auth_error"},
		{"unknown route for admin", "/no/such/route", []string{"Authorization", "Bearer " + testMasterKey}, 404, "not_found_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.do(t, "GET", tc.path, nil, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.errType != "" {
				if got := r.errorField(t, "type"); got != tc.errType {
					t.Errorf("error type %q, want %q (%s)", got, tc.errType, r.body)
				}
				if got := r.errorField(t, "code"); got != strconv.Itoa(tc.status) {
					t.Errorf("error code %q, want %d", got, tc.status)
				}
			}
		})
	}
}

func TestKeyCacheInvalidation(t *testing.T) {
	g := newTestGateway(t, nil)
	k := g.addKey(t, "sk-cached-0001", nil)
	get := func() int {
		return g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer sk-cached-0001").status
	}
	if got := get(); got != 200 {
		t.Fatalf("got %d, want 200", got)
	}
	k.Blocked = true
	if err := g.db.UpdateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != 200 {
		t.Fatalf("blocked but cached: got %d, want 200 until invalidated", got)
	}
	g.s.invalidateKey(k.TokenHash)
	if got := get(); got != 403 {
		t.Fatalf("after invalidateKey: got %d, want 403", got)
	}
	k.Blocked = false
	if err := g.db.UpdateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	g.s.invalidateAllKeys()
	if got := get(); got != 200 {
		t.Fatalf("after invalidateAllKeys: got %d, want 200", got)
	}
}

// TestRouteClassification pins that only the request line's path decides, segment-wise.
func TestRouteClassification(t *testing.T) {
	g := newTestGateway(t, nil)
	g.s.addRouteRule("/zz/exact", false, classUser)
	tests := []struct {
		path string
		want routeClass
	}{
		{"/health/liveliness", classPublic},
		{"/health/readiness", classPublic},
		{"/health/readiness/", classPublic},
		{"/health/readiness/details", classUser},
		{"/health/liveliness/x", classAdmin},
		{"/health/readinessX", classAdmin},
		{"/health/readiness/../../v1/mcp/server", classAdmin},
		{"/.well-known/oauth-protected-resource/mcp", classPublic},
		{"/.well-known/../v1/mcp/server", classAdmin},
		{"/.well-knownx", classAdmin},
		{"/credentials/by_name/openai", classAdmin},
		{"/v1/mcp/server", classAdmin},
		{"/v1/mcp", classAdmin},
		{"/v1/mcp/tools", classUser},
		{"/mcp", classMCP},
		{"/mcp/", classMCP},
		{"/mcp/github", classMCP},
		{"/mcp/a,b", classMCP},
		{"/mcpx", classAdmin},
		{"/github/mcp", classMCP},
		{"/github/sse", classAdmin},
		{"/mcp/sse", classMCP},
		{"/mcp/sse/messages", classMCP},
		{"/mcp-rest/tools/list", classUser},
		{"/zz/exact", classUser},
		{"/zz/exact/x", classAdmin},
		{"/zz/other", classAdmin},
		{"//health/liveliness", classAdmin},
		{"/metrics", classAdmin},
		{"/", classAdmin},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "http://localhost"+tc.path, nil)
		r.URL.Path = tc.path
		if got := g.s.classify(r); got != tc.want {
			t.Errorf("classify(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "http://localhost/health/readiness%2F..%2F..%2Fv1", nil)
	if got := g.s.classify(r); got != classAdmin {
		t.Errorf("encoded slash: got %v, want admin", got)
	}
}

// TestHostHeaderTricks sends protected paths with Host values that would fool a router
// that rebuilt the URL from Host.
func TestHostHeaderTricks(t *testing.T) {
	g := newTestGateway(t, nil)
	for _, host := range []string{"localhost/?x=1", "localhost:4000/#test", "localhost/health/liveliness?", "evil.example/.well-known/x#"} {
		for _, path := range []string{"/v1/mcp/server", "/metrics", "/mcp"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Host = host
			rec := httptest.NewRecorder()
			g.s.Handler().ServeHTTP(rec, req)
			if rec.Code != 401 {
				t.Errorf("Host %q, path %s: got %d %s, want 401", host, path, rec.Code, rec.Body)
			}
		}
	}
	// Through a real listener the malformed Host never reaches a handler at all.
	conn := rawRequest(t, g.url, "GET /v1/mcp/server HTTP/1.1\r\nHost: localhost/?x=1\r\n\r\n")
	if conn == 200 {
		t.Errorf("raw request with a malformed Host: got 200")
	}
}

func TestTokenAuthenticatorAndChallenge(t *testing.T) {
	g := newTestGateway(t, nil)
	g.s.addTokenAuthenticator(func(ctx context.Context, token string) (*Principal, error) {
		switch token {
		case "oauth-good":
			return &Principal{Kind: KindOAuth, Subject: "user-1"}, nil
		case "oauth-expired":
			return nil, &Error{Status: 401, Type: "expired_token", Message: "token expired"}
		}
		return nil, nil
	})
	g.s.challenge = func(r *http.Request) string { return `Bearer resource_metadata="x"` }
	if r := g.do(t, "GET", "/v1/mcp/tools", nil, "Authorization", "Bearer oauth-good"); r.status != 200 {
		t.Errorf("oauth token: got %d %s", r.status, r.body)
	}
	r := g.do(t, "POST", "/mcp", "{}", "Authorization", "Bearer oauth-expired")
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("expired oauth token on /mcp: got %d %v, want 401 with a challenge", r.status, r.header)
	}
	r = g.do(t, "POST", "/mcp", "{}")
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer resource_metadata="x"` {
		t.Errorf("no token on /mcp: got %d %v, want 401 with a challenge", r.status, r.header)
	}
	if r := g.do(t, "GET", "/v1/mcp/server", nil); r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("management 401 carries a challenge")
	}
}
