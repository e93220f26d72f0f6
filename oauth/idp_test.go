package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
)

// fakeOIDC is an auto-approving OpenID provider: /authorize redirects back with a code,
// /token checks PKCE and returns an ID token signed by is.
type fakeOIDC struct {
	ts    *httptest.Server
	is    *oauthtest.Issuer
	mu    sync.Mutex
	codes map[string]url.Values // code -> authorize params
	email string
	nonce string // if set, overrides the nonce put in the ID token
}

func newFakeOIDC(t *testing.T) *fakeOIDC {
	f := &fakeOIDC{is: oauthtest.NewIssuer(t), codes: map[string]url.Values{}, email: "ann@example.com"}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		code := "c" + q.Get("state")[:8]
		f.codes[code] = q
		f.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		q, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		f.mu.Unlock()
		h := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(h[:]) != q.Get("code_challenge") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		c := f.is.Claims("idp-user-1", q.Get("client_id"))
		c["email"] = f.email
		c["nonce"] = q.Get("nonce")
		if f.nonce != "" {
			c["nonce"] = f.nonce
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "idp-at", "token_type": "Bearer", "expires_in": 3600, "id_token": f.is.Sign(t, c)})
	})
	f.ts = httptest.NewServer(mux)
	t.Cleanup(f.ts.Close)
	return f
}

func TestIdPLogin(t *testing.T) {
	idp := newFakeOIDC(t)
	f := newASFixture(t, func(c *oauth.ServerConfig) {
		c.Keys = nil
		c.IdP = &oauth.IdPConfig{Issuer: idp.is.URL, ClientID: "toolgate", ClientSecret: "s", JWKSURL: idp.is.JWKSURL(),
			AuthorizationURL: idp.ts.URL + "/authorize", TokenURL: idp.ts.URL + "/token",
			ClaimMapping: oauth.ClaimMapping{UserID: "email"},
			Subject: func(_ context.Context, p *oauth.Principal) (string, error) {
				if p.UserID != "ann@example.com" {
					return "", errors.New("unknown user")
				}
				return "user:ann", nil
			}}
	})
	id := f.publicClient(redirect)
	verifier, challenge := oauthtest.PKCE()
	run := func() *url.URL {
		t.Helper()
		b := oauthtest.Browser()
		page, err := oauthtest.OpenLogin(b, f.authorizeURL(id, redirect, challenge, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := page.Submit(b, "", "approve")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for i := 0; i < 3 && (resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound); i++ {
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if loc.Host == "127.0.0.1:5555" {
				return loc
			}
			if resp, err = b.Get(loc.String()); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		t.Fatalf("IdP flow did not reach the client; last status %d", resp.StatusCode)
		return nil
	}
	loc := run()
	status, tok := f.token(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {id}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	if status != 200 {
		t.Fatalf("token: %d %v", status, tok)
	}
	g, err := f.srv.Introspect(context.Background(), tok["access_token"].(string))
	if err != nil || g.Subject != "user:ann" {
		t.Fatalf("grant: %+v %v", g, err)
	}

	idp.email = "mallory@example.com"
	if loc := run(); loc.Query().Get("error") != "access_denied" {
		t.Errorf("unknown IdP user: got %s, want error=access_denied", loc)
	}
	idp.email = "ann@example.com"
	idp.nonce = "replayed"
	if loc := run(); loc.Query().Get("error") != "access_denied" {
		t.Errorf("wrong nonce: got %s, want error=access_denied", loc)
	}
}
