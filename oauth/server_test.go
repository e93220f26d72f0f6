package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
)

// fakeKeys is a KeyVerifier and SubjectChecker over a fixed key table.
type fakeKeys struct {
	mu      sync.Mutex
	keys    map[string]string // secret -> subject
	revoked map[string]bool   // subject -> revoked
}

var (
	_ oauth.KeyVerifier    = (*fakeKeys)(nil)
	_ oauth.SubjectChecker = (*fakeKeys)(nil)
)

func (k *fakeKeys) VerifyKey(_ context.Context, secret string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.keys[secret]; ok && !k.revoked[s] {
		return s, nil
	}
	return "", oauth.ErrInvalidKey
}

func (k *fakeKeys) CheckSubject(_ context.Context, subject string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.revoked[subject] {
		return errors.New("key revoked")
	}
	return nil
}

func (k *fakeKeys) revoke(subject string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.revoked[subject] = true
}

type asFixture struct {
	t     *testing.T
	ts    *httptest.Server
	srv   *oauth.Server
	res   *oauth.Resource
	keys  *fakeKeys
	clock time.Time
	mu    sync.Mutex
}

func (f *asFixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *asFixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(d)
}

func newASFixture(t *testing.T, mod func(*oauth.ServerConfig)) *asFixture {
	f := &asFixture{t: t, keys: &fakeKeys{keys: map[string]string{"sk-good": "key:1", "sk-other": "key:2"}, revoked: map[string]bool{}},
		clock: time.Now()}
	mux := http.NewServeMux()
	f.ts = httptest.NewServer(mux)
	t.Cleanup(f.ts.Close)
	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: f.ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth.ServerConfig{Resource: res, Store: oauthtest.NewMemStore(), Keys: f.keys, Now: f.now,
		ClientMetadataDocuments: true, HTTPClient: devFetch}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := oauth.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.res = srv, res
	mux.Handle(oauth.WellKnownResource, res)
	mux.Handle(oauth.WellKnownResource+"/", res)
	for _, p := range srv.Paths() {
		mux.Handle(p, srv)
	}
	return f
}

// register registers a client and returns its client_id (and secret, if any).
func (f *asFixture) register(body string) (id, secret string, status int, errCode string) {
	f.t.Helper()
	resp, err := http.Post(f.ts.URL+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	id, _ = out["client_id"].(string)
	secret, _ = out["client_secret"].(string)
	errCode, _ = out["error"].(string)
	return id, secret, resp.StatusCode, errCode
}

func (f *asFixture) publicClient(redirect string) string {
	f.t.Helper()
	id, _, status, _ := f.register(`{"redirect_uris":["` + redirect + `"],"token_endpoint_auth_method":"none",
		"grant_types":["authorization_code","refresh_token"],"client_name":"Test Client","application_type":"native"}`)
	if status != http.StatusCreated {
		f.t.Fatalf("register: status %d", status)
	}
	return id
}

func (f *asFixture) authorizeURL(clientID, redirect, challenge string, extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st-1"},
		"scope": {"mcp"}, "resource": {f.ts.URL + "/mcp"}}
	for k, v := range extra {
		if v == nil {
			q.Del(k)
		} else {
			q[k] = v
		}
	}
	return f.ts.URL + "/authorize?" + q.Encode()
}

// token posts a token request and returns the status and decoded body.
func (f *asFixture) token(form url.Values) (int, map[string]any) {
	f.t.Helper()
	resp, err := http.PostForm(f.ts.URL+"/token", form)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		f.t.Errorf("token Cache-Control: got %q, want no-store", cc)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// code runs the login page and returns a fresh authorization code.
func (f *asFixture) code(clientID, redirect, challenge string) string {
	f.t.Helper()
	loc, err := oauthtest.Login(oauthtest.Browser(), f.authorizeURL(clientID, redirect, challenge, nil), "sk-good")
	if err != nil {
		f.t.Fatal(err)
	}
	q := loc.Query()
	if q.Get("code") == "" {
		f.t.Fatalf("no code in %s", loc)
	}
	return q.Get("code")
}

const redirect = "http://127.0.0.1:5555/callback"

func TestAuthorizationCodeFlow(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()

	loc, err := oauthtest.Login(oauthtest.Browser(), f.authorizeURL(id, redirect, challenge, nil), "sk-good")
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		t.Errorf("redirected to %s, want %s", got, redirect)
	}
	if q.Get("state") != "st-1" || q.Get("iss") != f.ts.URL {
		t.Errorf("authorization response: state %q iss %q, want st-1 and %s", q.Get("state"), q.Get("iss"), f.ts.URL)
	}
	status, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "client_id": {id},
		"redirect_uri": {redirect}, "code_verifier": {verifier}, "resource": {f.ts.URL + "/mcp"}})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if !oauth.IsAccessToken(at) || rt == "" || tok["token_type"] != "Bearer" || tok["scope"] != "mcp" {
		t.Fatalf("token response: %v", tok)
	}
	g, err := f.srv.Introspect(context.Background(), at)
	if err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	if g.Subject != "key:1" || g.ClientID != id || g.Resource != f.ts.URL+"/mcp" || !g.HasScope("mcp") {
		t.Errorf("grant: %+v", g)
	}
	if !g.Covers(f.ts.URL+"/mcp") || !g.Covers(f.ts.URL+"/mcp/github") || g.Covers(f.ts.URL+"/github/mcp") {
		t.Errorf("grant audience coverage is wrong: %+v", g)
	}

	// Refresh rotates: the new pair works, the old refresh token is spent.
	status, tok2 := f.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, tok2)
	}
	at2, rt2 := tok2["access_token"].(string), tok2["refresh_token"].(string)
	if at2 == at || rt2 == rt || rt2 == "" {
		t.Fatalf("refresh did not rotate: %v", tok2)
	}
	if _, err := f.srv.Introspect(context.Background(), at2); err != nil {
		t.Fatalf("Introspect(refreshed): %v", err)
	}
	// Replaying the spent refresh token revokes the family.
	status, body := f.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("replayed refresh: got %d %v, want 400 invalid_grant", status, body)
	}
	if _, err := f.srv.Introspect(context.Background(), at2); !errors.Is(err, oauth.ErrRevoked) {
		t.Errorf("access token after refresh replay: got %v, want ErrRevoked", err)
	}
	status, body = f.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "client_id": {id}})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh of a revoked family: got %d %v, want 400 invalid_grant", status, body)
	}
}

func TestTokenErrors(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	other := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()
	exchange := func(code string, mod url.Values) url.Values {
		v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {id},
			"redirect_uri": {redirect}, "code_verifier": {verifier}}
		for k, x := range mod {
			if x == nil {
				v.Del(k)
			} else {
				v[k] = x
			}
		}
		return v
	}
	cases := []struct {
		name       string
		form       func() url.Values
		wantStatus int
		wantErr    string
	}{
		{"replayed code", func() url.Values {
			c := f.code(id, redirect, challenge)
			if s, b := f.token(exchange(c, nil)); s != 200 {
				t.Fatalf("first exchange: %d %v", s, b)
			}
			return exchange(c, nil)
		}, 400, "invalid_grant"},
		{"PKCE mismatch", func() url.Values {
			other, _ := oauthtest.PKCE()
			return exchange(f.code(id, redirect, challenge), url.Values{"code_verifier": {other}})
		}, 400, "invalid_grant"},
		{"PKCE verifier missing", func() url.Values {
			return exchange(f.code(id, redirect, challenge), url.Values{"code_verifier": nil})
		}, 400, "invalid_request"},
		{"code unusable after a missing verifier", func() url.Values {
			c := f.code(id, redirect, challenge)
			f.token(exchange(c, url.Values{"code_verifier": nil}))
			return exchange(c, nil)
		}, 400, "invalid_grant"},
		{"expired code", func() url.Values {
			c := f.code(id, redirect, challenge)
			f.advance(oauth.DefaultCodeTTL + time.Second)
			return exchange(c, nil)
		}, 400, "invalid_grant"},
		{"redirect_uri differs at the token endpoint", func() url.Values {
			return exchange(f.code(id, redirect, challenge), url.Values{"redirect_uri": {"http://127.0.0.1:5555/other"}})
		}, 400, "invalid_grant"},
		{"code of another client", func() url.Values {
			return exchange(f.code(id, redirect, challenge), url.Values{"client_id": {other}})
		}, 400, "invalid_grant"},
		{"resource differs", func() url.Values {
			return exchange(f.code(id, redirect, challenge), url.Values{"resource": {f.ts.URL + "/other/mcp"}})
		}, 400, "invalid_target"},
		{"unknown client", func() url.Values { return exchange("x", url.Values{"client_id": {"nope"}}) }, 401, "invalid_client"},
		{"unsupported grant", func() url.Values { return url.Values{"grant_type": {"password"}, "client_id": {id}} }, 400, "unsupported_grant_type"},
		{"unknown refresh token", func() url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"tgrt_nope"}, "client_id": {id}}
		}, 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := f.token(tc.form())
			if status != tc.wantStatus || body["error"] != tc.wantErr {
				t.Errorf("got %d %v, want %d %s", status, body, tc.wantStatus, tc.wantErr)
			}
		})
	}
}

func TestAuthorizeRequestErrors(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	_, challenge := oauthtest.PKCE()
	cases := []struct {
		name       string
		url        string
		wantStatus int
		wantErr    string // error param of the redirect; "" for a page
	}{
		{"redirect_uri mismatch", f.authorizeURL(id, "http://127.0.0.1:5555/evil", challenge, nil), 400, ""},
		{"https redirect not registered", f.authorizeURL(id, "https://evil.example/callback", challenge, nil), 400, ""},
		{"unknown client", f.authorizeURL("nope", redirect, challenge, nil), 401, ""},
		{"loopback on another port", f.authorizeURL(id, "http://127.0.0.1:6123/callback", challenge, nil), 200, ""},
		{"no code_challenge", f.authorizeURL(id, redirect, "", url.Values{"code_challenge": nil}), 303, "invalid_request"},
		{"plain PKCE", f.authorizeURL(id, redirect, challenge, url.Values{"code_challenge_method": {"plain"}}), 303, "invalid_request"},
		{"token response type", f.authorizeURL(id, redirect, challenge, url.Values{"response_type": {"token"}}), 303, "unsupported_response_type"},
		{"foreign resource", f.authorizeURL(id, redirect, challenge, url.Values{"resource": {"https://other.example/mcp"}}), 303, "invalid_target"},
		{"unknown scope", f.authorizeURL(id, redirect, challenge, url.Values{"scope": {"admin"}}), 303, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := oauthtest.Browser().Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status: got %d, want %d (Location %q)", resp.StatusCode, tc.wantStatus, resp.Header.Get("Location"))
			}
			if resp.StatusCode != 303 {
				if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
					t.Errorf("X-Frame-Options: got %q, want DENY", got)
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if got := loc.Query().Get("error"); got != tc.wantErr {
				t.Errorf("error: got %q, want %q", got, tc.wantErr)
			}
			if loc.Query().Get("iss") != f.ts.URL || loc.Query().Get("state") != "st-1" {
				t.Errorf("error redirect lacks iss/state: %s", loc)
			}
		})
	}
}

func TestLoginPage(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	_, challenge := oauthtest.PKCE()
	au := f.authorizeURL(id, redirect, challenge, nil)

	t.Run("replayed state", func(t *testing.T) {
		b := oauthtest.Browser()
		page, err := oauthtest.OpenLogin(b, au)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := page.Submit(b, "sk-good", "approve")
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first submit: %d", resp.StatusCode)
		}
		resp, _ = page.Submit(b, "sk-good", "approve")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed submit: got %d, want 400", resp.StatusCode)
		}
	})
	t.Run("CSRF cookie missing", func(t *testing.T) {
		page, err := oauthtest.OpenLogin(oauthtest.Browser(), au)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := page.Submit(oauthtest.Browser(), "sk-good", "approve") // another browser: no cookie
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("submit without cookie: got %d, want 403", resp.StatusCode)
		}
	})
	t.Run("CSRF cookie of another request", func(t *testing.T) {
		b := oauthtest.Browser()
		first, _ := oauthtest.OpenLogin(b, au)
		second, _ := oauthtest.OpenLogin(b, au) // cookie now belongs to second
		first.CSRF = second.CSRF                // the attacker knows its own token only
		resp, _ := first.Submit(b, "sk-good", "approve")
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-request CSRF: got %d, want 403", resp.StatusCode)
		}
	})
	t.Run("wrong key shows the page again", func(t *testing.T) {
		b := oauthtest.Browser()
		page, _ := oauthtest.OpenLogin(b, au)
		resp, _ := page.Submit(b, "sk-bad", "approve")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "not accepted") {
			t.Fatalf("wrong key: got %d", resp.StatusCode)
		}
	})
	t.Run("deny", func(t *testing.T) {
		b := oauthtest.Browser()
		page, _ := oauthtest.OpenLogin(b, au)
		resp, _ := page.Submit(b, "", "deny")
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" {
			t.Errorf("deny: got %d %s, want 303 error=access_denied", resp.StatusCode, loc)
		}
	})
	t.Run("expired request", func(t *testing.T) {
		b := oauthtest.Browser()
		page, _ := oauthtest.OpenLogin(b, au)
		f.advance(oauth.DefaultRequestTTL + time.Second)
		resp, _ := page.Submit(b, "sk-good", "approve")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("expired request: got %d, want 400", resp.StatusCode)
		}
	})
}

func TestRevokedKeyRevokesTokens(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()
	_, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {f.code(id, redirect, challenge)},
		"client_id": {id}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	f.keys.revoke("key:1")
	if _, err := f.srv.Introspect(context.Background(), at); !errors.Is(err, oauth.ErrRevoked) {
		t.Errorf("Introspect after key revocation: got %v, want ErrRevoked", err)
	}
	if s, b := f.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}}); s != 400 || b["error"] != "invalid_grant" {
		t.Errorf("refresh after key revocation: got %d %v, want 400 invalid_grant", s, b)
	}
	if _, err := f.srv.Introspect(context.Background(), "tgat_unknown"); !errors.Is(err, oauth.ErrRevoked) {
		t.Errorf("Introspect(unknown): got %v, want ErrRevoked", err)
	}
	if _, err := f.srv.Introspect(context.Background(), "sk-good"); !errors.Is(err, oauth.ErrMalformedToken) {
		t.Errorf("Introspect(key): got %v, want ErrMalformedToken", err)
	}
}

func TestAccessTokenExpires(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()
	_, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {f.code(id, redirect, challenge)},
		"client_id": {id}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	f.advance(oauth.DefaultAccessTokenTTL)
	if _, err := f.srv.Introspect(context.Background(), tok["access_token"].(string)); !errors.Is(err, oauth.ErrExpired) {
		t.Errorf("Introspect(expired): got %v, want ErrExpired", err)
	}
}

func TestRegister(t *testing.T) {
	f := newASFixture(t, nil)
	cases := []struct {
		name       string
		body       string
		wantStatus int
		wantErr    string
		wantSecret bool
	}{
		{"claude code", `{"client_name":"Claude Code (gw)","redirect_uris":["http://localhost:43123/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"native","scope":"mcp"}`, 201, "", false},
		{"confidential by default", `{"redirect_uris":["https://app.example/cb"]}`, 201, "", true},
		{"http non-loopback", `{"redirect_uris":["http://app.example/cb"],"token_endpoint_auth_method":"none"}`, 400, "invalid_redirect_uri", false},
		{"fragment", `{"redirect_uris":["https://app.example/cb#x"],"token_endpoint_auth_method":"none"}`, 400, "invalid_redirect_uri", false},
		{"javascript scheme", `{"redirect_uris":["javascript:alert(1)"],"token_endpoint_auth_method":"none"}`, 400, "invalid_redirect_uri", false},
		{"private-use scheme", `{"redirect_uris":["com.example.app:/cb"],"token_endpoint_auth_method":"none"}`, 201, "", false},
		{"no redirect", `{"token_endpoint_auth_method":"none"}`, 400, "invalid_redirect_uri", false},
		{"implicit", `{"redirect_uris":["https://a/cb"],"response_types":["token"]}`, 400, "invalid_client_metadata", false},
		{"bad json", `{`, 400, "invalid_client_metadata", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, secret, status, errCode := f.register(tc.body)
			if status != tc.wantStatus || errCode != tc.wantErr {
				t.Fatalf("got %d %q, want %d %q", status, errCode, tc.wantStatus, tc.wantErr)
			}
			if status == 201 && (id == "" || (secret != "") != tc.wantSecret) {
				t.Errorf("client_id %q secret %q, want secret: %v", id, secret, tc.wantSecret)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	f := newASFixture(t, nil)
	id, secret, status, _ := f.register(`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}`)
	if status != 201 {
		t.Fatalf("register: %d", status)
	}
	req, _ := http.NewRequest("POST", f.ts.URL+"/token", strings.NewReader("grant_type=client_credentials&scope=mcp"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok["refresh_token"] != nil {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, tok)
	}
	g, err := f.srv.Introspect(context.Background(), tok["access_token"].(string))
	if err != nil || g.Subject != "client:"+id {
		t.Fatalf("Introspect: %+v %v", g, err)
	}
	req.SetBasicAuth(id, "wrong")
	req.Body = io.NopCloser(strings.NewReader("grant_type=client_credentials"))
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("wrong secret: got %d, want 401 with a Basic challenge", resp.StatusCode)
	}
}

func TestClientIDMetadataDocument(t *testing.T) {
	f := newASFixture(t, nil)
	docs := http.NewServeMux()
	dts := httptest.NewServer(docs)
	defer dts.Close()
	docs.HandleFunc("/client.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"client_id":"`+dts.URL+`/client.json","client_name":"CIMD app","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`)
	})
	docs.HandleFunc("/liar.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"client_id":"https://someone.else/client.json","redirect_uris":["`+redirect+`"]}`)
	})
	id := dts.URL + "/client.json"
	verifier, challenge := oauthtest.PKCE()
	status, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {f.code(id, redirect, challenge)},
		"client_id": {id}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	if status != 200 || tok["refresh_token"] == nil {
		t.Fatalf("CIMD token: %d %v", status, tok)
	}
	resp, err := oauthtest.Browser().Get(f.authorizeURL(dts.URL+"/liar.json", redirect, challenge, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("lying CIMD: got %d, want 401", resp.StatusCode)
	}
}

func TestAuthServerMetadata(t *testing.T) {
	f := newASFixture(t, nil)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/.well-known/oauth-authorization-server", 200},
		{"/.well-known/openid-configuration", 200},
		{"/.well-known/oauth-authorization-server/other-tenant", 404},
	} {
		resp, err := http.Get(f.ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: got %d, want %d", tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if md["issuer"] != f.ts.URL || md["token_endpoint"] != f.ts.URL+"/token" ||
			md["authorization_response_iss_parameter_supported"] != true ||
			!strings.Contains(string(mustJSON(md["code_challenge_methods_supported"])), "S256") {
			t.Errorf("%s: metadata %v", tc.path, md)
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestSweepExpired(t *testing.T) {
	f := newASFixture(t, nil)
	id := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()
	exchange := func() map[string]any {
		_, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {f.code(id, redirect, challenge)},
			"client_id": {id}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
		return tok
	}
	old := exchange()
	// Past the refresh lifetime plus a day, the next issuance sweeps the old tokens away.
	f.advance(oauth.DefaultRefreshTokenTTL + 25*time.Hour)
	exchange()
	if _, err := f.srv.Introspect(context.Background(), old["access_token"].(string)); !errors.Is(err, oauth.ErrRevoked) {
		t.Errorf("swept token: got %v, want ErrRevoked (gone)", err)
	}
}
