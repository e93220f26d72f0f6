// Package oauthtest provides in-process OAuth fakes for tests: an Issuer that signs JWTs
// and serves their JWKS, an in-memory store.OAuthStore, and browser helpers that walk the
// gateway's login page. The auto-approving authorization server is oauth.NewTestAuthServer
// (it is built from oauth.Server, which this package may not import).
package oauthtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Issuer is a token issuer for tests: it holds RSA signing keys and serves their public
// JWKS at URL + "/jwks". It is safe for concurrent use.
type Issuer struct {
	Server *httptest.Server
	// URL is the issuer's base URL (also its default iss).
	URL string

	mu      sync.Mutex
	keys    []jwk.Key // private; the first signs
	fetches atomic.Int64
}

// NewIssuer starts an Issuer with one RSA key and registers its shutdown with tb.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	is := &Issuer{}
	is.AddKey(tb)
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(is.JWKS())
	})
	is.Server = httptest.NewServer(mux)
	is.URL = is.Server.URL
	tb.Cleanup(is.Server.Close)
	return is
}

// JWKSURL is where the issuer's public keys are served.
func (is *Issuer) JWKSURL() string { return is.URL + "/jwks" }

// Fetches reports how many times the JWKS was fetched.
func (is *Issuer) Fetches() int64 { return is.fetches.Load() }

// AddKey generates a new RSA key with a fresh kid and makes it the signing key; the old
// keys stay published.
func (is *Issuer) AddKey(tb testing.TB) {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := jwk.FromRaw(priv)
	if err != nil {
		tb.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	k.Set(jwk.KeyIDKey, fmt.Sprintf("k%d", len(is.keys)+1))
	k.Set(jwk.AlgorithmKey, jwa.RS256)
	k.Set(jwk.KeyUsageKey, "sig")
	is.keys = append([]jwk.Key{k}, is.keys...)
}

// PrivateKey returns the current signing key.
func (is *Issuer) PrivateKey() jwk.Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[0]
}

// PublicKey returns the raw RSA public key of the current signing key.
func (is *Issuer) PublicKey() *rsa.PublicKey {
	var priv rsa.PrivateKey
	if err := is.PrivateKey().Raw(&priv); err != nil {
		panic(err)
	}
	return &priv.PublicKey
}

// JWKS returns the public key set.
func (is *Issuer) JWKS() jwk.Set {
	is.mu.Lock()
	defer is.mu.Unlock()
	set := jwk.NewSet()
	for _, k := range is.keys {
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			panic(err)
		}
		set.AddKey(pub)
	}
	return set
}

// Claims returns a valid claim set for the issuer: iss, sub, aud, iat and exp one hour on.
func (is *Issuer) Claims(sub, aud string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": is.URL, "sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign signs claims with the current key (RS256, its kid in the header).
func (is *Issuer) Sign(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return SignWith(tb, is.PrivateKey(), jwa.RS256, claims)
}

// SignWith signs claims with key and alg; key's kid, if any, goes in the header.
func SignWith(tb testing.TB, key any, alg jwa.SignatureAlgorithm, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if k, ok := key.(jwk.Key); ok && k.KeyID() != "" {
		hdr.Set(jws.KeyIDKey, k.KeyID())
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}
