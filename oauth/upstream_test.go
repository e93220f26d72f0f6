package oauth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/internal/seal"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
)

type upstreamFixture struct {
	as    *oauth.TestAuthServer
	gw    *httptest.Server
	up    *oauth.Upstream
	store *oauthtest.MemStore
	srvs  map[string]oauth.UpstreamServer
	mu    sync.Mutex
	clock time.Time
}

func (f *upstreamFixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func newUpstreamFixture(t *testing.T) *upstreamFixture {
	f := &upstreamFixture{as: oauth.NewTestAuthServer(t), store: oauthtest.NewMemStore(), clock: time.Now()}
	f.gw = httptest.NewUnstartedServer(nil)
	public := "http://" + f.gw.Listener.Addr().String()
	box, err := seal.New("test")
	if err != nil {
		t.Fatal(err)
	}
	f.srvs = map[string]oauth.UpstreamServer{
		"github": {ID: "github", Name: "GitHub", ClientID: "gw-client", AuthorizationURL: f.as.AuthorizationURL(),
			TokenURL: f.as.TokenURL(), Scopes: []string{"mcp"}, Resource: f.as.URL + "/mcp"},
		"m2m": {ID: "m2m", ClientID: "m2m-client", ClientSecret: "s3cret", TokenURL: f.as.TokenURL(),
			GrantType: oauth.GrantClientCredentials, Scopes: []string{"mcp"}},
	}
	up, err := oauth.NewUpstream(oauth.UpstreamConfig{
		Store: f.store, Sealer: box, PublicURL: public, HTTPClient: devFetch, Now: f.now,
		Keys: &fakeKeys{keys: map[string]string{"sk-good": "key:1"}, revoked: map[string]bool{}},
		Servers: func(_ context.Context, id string) (oauth.UpstreamServer, error) {
			s, ok := f.srvs[id]
			if !ok {
				return s, errors.New("no such server")
			}
			return s, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.up = up
	f.as.AddClient(t, "gw-client", "", up.CallbackURL())
	f.as.AddClient(t, "m2m-client", "s3cret")
	f.gw.Config.Handler = up
	f.gw.Start()
	t.Cleanup(f.gw.Close)
	return f
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// connect runs the connect page and the upstream redirect dance; it returns the final
// callback response status.
func (f *upstreamFixture) connect(t *testing.T, connectURL, key string) int {
	t.Helper()
	b := oauthtest.Browser()
	resp, err := b.Get(connectURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("connect page has no csrf field: %s", body)
	}
	u, _ := url.Parse(connectURL)
	resp, err = b.PostForm(u.Scheme+"://"+u.Host+u.Path, url.Values{"server": {u.Query().Get("server")}, "csrf": {string(m[1])}, "key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
		resp, err = b.Get(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return resp.StatusCode
}

func TestUpstreamAuthorizationCode(t *testing.T) {
	f := newUpstreamFixture(t)
	ctx := context.Background()
	_, err := f.up.Headers(ctx, f.srvs["github"], "key:1")
	var are *oauth.AuthRequiredError
	if !errors.As(err, &are) || are.Server != "github" {
		t.Fatalf("Headers before connecting: got %v, want AuthRequiredError", err)
	}
	if status := f.connect(t, are.ConnectURL, "sk-good"); status != 200 {
		t.Fatalf("connect: final status %d, want 200", status)
	}
	h, err := f.up.Headers(ctx, f.srvs["github"], "key:1")
	if err != nil {
		t.Fatalf("Headers after connecting: %v", err)
	}
	tok := h.Get("Authorization")[len("Bearer "):]
	g, err := f.as.Introspect(tok)
	if err != nil || g.Resource != f.as.URL+"/mcp" {
		t.Fatalf("upstream token: %+v %v", g, err)
	}
	if _, err := f.up.Headers(ctx, f.srvs["github"], "key:2"); !errors.As(err, &are) {
		t.Errorf("another user: got %v, want AuthRequiredError", err)
	}
	stored, _ := f.store.UpstreamToken(ctx, "github", "key:1")
	if stored == nil || len(stored.Sealed) == 0 || contains(stored.Sealed, tok) {
		t.Errorf("stored token is not sealed")
	}

	// Past expiry the token is refreshed (and rotated) with x/oauth2.
	f.mu.Lock()
	f.clock = f.clock.Add(2 * time.Hour)
	f.mu.Unlock()
	h2, err := f.up.Headers(ctx, f.srvs["github"], "key:1")
	if err != nil {
		t.Fatalf("Headers after expiry: %v", err)
	}
	if h2.Get("Authorization") == h.Get("Authorization") {
		t.Errorf("token was not refreshed")
	}
	if _, err := f.as.Introspect(h2.Get("Authorization")[len("Bearer "):]); err != nil {
		t.Errorf("refreshed token: %v", err)
	}
}

func contains(b []byte, s string) bool {
	return len(s) > 0 && regexp.MustCompile(regexp.QuoteMeta(s)).Match(b)
}

func TestUpstreamConnectRefusals(t *testing.T) {
	f := newUpstreamFixture(t)
	connectURL := f.gw.URL + oauth.ConnectPath + "?server=github"
	if status := f.connect(t, connectURL, "sk-wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong key: got %d, want 401", status)
	}
	// A cross-site form without the CSRF cookie is refused.
	resp, err := http.PostForm(f.gw.URL+oauth.ConnectPath, url.Values{"server": {"github"}, "key": {"sk-good"}, "csrf": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CSRF: got %d, want 403", resp.StatusCode)
	}
	resp, err = http.Get(f.gw.URL + oauth.CallbackPath + "?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("forged state: got %d, want 400", resp.StatusCode)
	}
}

func TestUpstreamClientCredentials(t *testing.T) {
	f := newUpstreamFixture(t)
	ctx := context.Background()
	h1, err := f.up.Headers(ctx, f.srvs["m2m"], "anyone")
	if err != nil {
		t.Fatal(err)
	}
	h3, err := f.up.Headers(ctx, f.srvs["m2m"], "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	if h1.Get("Authorization") != h3.Get("Authorization") {
		t.Errorf("client-credentials token was not cached")
	}
	g, err := f.as.Introspect(h1.Get("Authorization")[len("Bearer "):])
	if err != nil || g.Subject != "client:m2m-client" {
		t.Errorf("m2m token: %+v %v", g, err)
	}
	bad := f.srvs["m2m"]
	bad.ClientSecret = "wrong"
	bad.ID = "m2m-bad"
	if _, err := f.up.Headers(ctx, bad, ""); err == nil {
		t.Errorf("wrong client secret: got a token")
	}
}
