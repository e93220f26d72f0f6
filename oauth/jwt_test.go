package oauth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
)

var devFetch = oauth.NewHTTPClient(oauth.FetchConfig{AllowLoopback: true})

type jwtFixture struct {
	a, b, global *oauthtest.Issuer
	v            *oauth.JWTValidator
}

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	f := &jwtFixture{a: oauthtest.NewIssuer(t), b: oauthtest.NewIssuer(t), global: oauthtest.NewIssuer(t)}
	v, err := oauth.NewJWTValidator(oauth.JWTConfig{
		Issuers: []oauth.IssuerConfig{
			{Issuer: f.a.URL, JWKSURL: f.a.JWKSURL(), Audience: "toolgate",
				ClaimMapping: oauth.ClaimMapping{UserID: "email", TeamIDs: "groups", OrgID: "org", Roles: "realm_access.roles"}},
			{Issuer: f.b.URL, JWKSURL: f.b.JWKSURL(), DisableAudienceValidation: true},
		},
		JWKSURL:            f.global.JWKSURL(),
		Audience:           "global-aud",
		MinRefreshInterval: time.Hour,
		HTTPClient:         devFetch,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func TestJWTValidate(t *testing.T) {
	f := newJWTFixture(t)
	ctx := context.Background()
	now := time.Now()

	with := func(c map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustMarshalPKIX(t, f.a)})
	tampered := func(tok string) string {
		parts := strings.Split(tok, ".")
		var c map[string]any
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		json.Unmarshal(b, &c)
		c["sub"] = "admin"
		b, _ = json.Marshal(c)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	}
	none := func(c map[string]any) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		b, _ := json.Marshal(c)
		return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
	}

	cases := []struct {
		name    string
		token   string
		wantErr error
		want    *oauth.Principal
	}{
		{
			name: "valid issuer A with claim mapping",
			token: f.a.Sign(t, with(f.a.Claims("u-1", "toolgate"), "email", "ann@example.com", "groups", []string{"t1", "t2"},
				"org", "o1", "realm_access", map[string]any{"roles": []string{"dev"}}, "scope", "mcp read")),
			want: &oauth.Principal{Issuer: f.a.URL, Subject: "u-1", UserID: "ann@example.com", TeamIDs: []string{"t1", "t2"},
				OrgID: "o1", Roles: []string{"dev"}, Scopes: []string{"mcp", "read"}, Audience: []string{"toolgate"}},
		},
		{
			name:  "valid issuer B without audience validation",
			token: f.b.Sign(t, with(f.b.Claims("u-2", "anything"), "scp", []string{"a"})),
			want:  &oauth.Principal{Issuer: f.b.URL, Subject: "u-2", UserID: "u-2", Scopes: []string{"a"}, Audience: []string{"anything"}},
		},
		{
			name:  "unknown issuer falls back to global",
			token: f.global.Sign(t, with(f.global.Claims("u-3", "global-aud"), "iss", "https://elsewhere.example")),
			want:  &oauth.Principal{Issuer: "https://elsewhere.example", Subject: "u-3", UserID: "u-3", Audience: []string{"global-aud"}},
		},
		{
			name:    "issuer A's token signed by issuer B's key",
			token:   f.b.Sign(t, f.a.Claims("u", "toolgate")),
			wantErr: oauth.ErrSignature, // both sets have a kid "k1"; A's key does not verify it
		},
		{
			name:    "unknown issuer signed by a listed issuer's key",
			token:   f.a.Sign(t, with(f.a.Claims("u", "global-aud"), "iss", "https://elsewhere.example")),
			wantErr: oauth.ErrSignature,
		},
		{name: "tampered payload", token: tampered(f.a.Sign(t, f.a.Claims("u", "toolgate"))), wantErr: oauth.ErrSignature},
		{name: "alg none", token: none(f.a.Claims("u", "toolgate")), wantErr: oauth.ErrAlgorithm},
		{
			name:    "HS256 with the RSA public key as secret",
			token:   oauthtest.SignWith(t, pubPEM, jwa.HS256, f.a.Claims("u", "toolgate")),
			wantErr: oauth.ErrAlgorithm,
		},
		{name: "expired", token: f.a.Sign(t, with(f.a.Claims("u", "toolgate"), "exp", now.Add(-time.Minute).Unix())), wantErr: oauth.ErrExpired},
		{name: "expired within leeway", token: f.a.Sign(t, with(f.a.Claims("u", "toolgate"), "exp", now.Add(-5*time.Second).Unix())),
			want: &oauth.Principal{Issuer: f.a.URL, Subject: "u", Audience: []string{"toolgate"}}},
		{name: "no exp", token: f.a.Sign(t, with(f.a.Claims("u", "toolgate"), "exp", nil)), wantErr: oauth.ErrMalformedToken},
		{name: "not yet valid", token: f.a.Sign(t, with(f.a.Claims("u", "toolgate"), "nbf", now.Add(time.Hour).Unix())), wantErr: oauth.ErrNotYetValid},
		{name: "issued in the future", token: f.a.Sign(t, with(f.a.Claims("u", "toolgate"), "iat", now.Add(time.Hour).Unix())), wantErr: oauth.ErrNotYetValid},
		{name: "wrong aud", token: f.a.Sign(t, f.a.Claims("u", "someone-else")), wantErr: oauth.ErrAudience},
		{name: "aud list containing ours", token: f.a.Sign(t, with(f.a.Claims("u", ""), "aud", []string{"x", "toolgate"})),
			want: &oauth.Principal{Issuer: f.a.URL, Subject: "u", Audience: []string{"x", "toolgate"}}},
		{name: "wrong aud on the global path", token: f.global.Sign(t, with(f.global.Claims("u", "toolgate"), "iss", "https://x.example")), wantErr: oauth.ErrAudience},
		{name: "malformed", token: "eyJhbGciOiJSUzI1NiJ9.bm9wZQ", wantErr: oauth.ErrMalformedToken},
		{name: "crit header", token: critToken(f.a.Claims("u", "toolgate")), wantErr: oauth.ErrMalformedToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.v.Validate(ctx, tc.token)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Validate: got %v, want %v", err, tc.wantErr)
				}
				status, oe := oauth.ErrorStatus(err)
				if status != http.StatusUnauthorized || oe.Code != oauth.CodeInvalidToken {
					t.Errorf("wire error: got %d %s, want 401 invalid_token", status, oe.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			ignore := func(p *oauth.Principal) *oauth.Principal {
				c := *p
				c.Claims, c.ExpiresAt = nil, time.Time{}
				if tc.want.UserID == "" {
					c.UserID = ""
				}
				return &c
			}
			if diff := cmp.Diff(tc.want, ignore(got)); diff != "" {
				t.Errorf("Principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func critToken(c map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","crit":["exp"]}`))
	b, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func mustMarshalPKIX(t testing.TB, is *oauthtest.Issuer) []byte {
	b, err := x509.MarshalPKIXPublicKey(is.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWTInternalClaimsStripped(t *testing.T) {
	f := newJWTFixture(t)
	c := f.a.Claims("u", "toolgate")
	c["toolgate_admin"] = true
	c["x-toolgate-api-key"] = "sk-1"
	c["user_role"] = "proxy_admin"
	c["is_admin"] = true
	c["custom"] = "kept"
	p, err := f.v.Validate(context.Background(), f.a.Sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"toolgate_admin", "x-toolgate-api-key", "user_role", "is_admin"} {
		if _, ok := p.Claims[k]; ok {
			t.Errorf("claim %q survived validation", k)
		}
	}
	if p.Claims["custom"] != "kept" {
		t.Errorf("custom claim: got %v, want kept", p.Claims["custom"])
	}
}

func TestJWTUnknownKidRefreshIsBounded(t *testing.T) {
	is := oauthtest.NewIssuer(t)
	clock := time.Now()
	v, err := oauth.NewJWTValidator(oauth.JWTConfig{
		Issuers:            []oauth.IssuerConfig{{Issuer: is.URL, JWKSURL: is.JWKSURL(), Audience: "tg"}},
		MinRefreshInterval: time.Minute,
		HTTPClient:         devFetch,
		Now:                func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	claims := func() map[string]any {
		c := is.Claims("u", "tg")
		c["exp"] = clock.Add(time.Hour).Unix()
		c["iat"] = clock.Unix()
		return c
	}
	if _, err := v.Validate(ctx, is.Sign(t, claims())); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := v.Validate(ctx, is.Sign(t, claims())); err != nil {
			t.Fatal(err)
		}
	}
	if got := is.Fetches(); got != 1 {
		t.Fatalf("fetches after cached validations: got %d, want 1", got)
	}
	// Rotation: the new kid is unknown, so the set is fetched once more (the last fetch
	// was over a minute ago).
	clock = clock.Add(2 * time.Minute)
	is.AddKey(t)
	if _, err := v.Validate(ctx, is.Sign(t, claims())); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := is.Fetches(); got != 2 {
		t.Fatalf("fetches after rotation: got %d, want 2", got)
	}
	// A flood of unknown kids does not re-fetch within the interval.
	is.AddKey(t)
	for range 20 {
		if _, err := v.Validate(ctx, is.Sign(t, claims())); !errors.Is(err, oauth.ErrUnknownKey) {
			t.Fatalf("unknown kid: got %v, want ErrUnknownKey", err)
		}
	}
	if got := is.Fetches(); got != 2 {
		t.Fatalf("fetches after unknown kids: got %d, want 2", got)
	}
	clock = clock.Add(2 * time.Minute)
	if _, err := v.Validate(ctx, is.Sign(t, claims())); err != nil {
		t.Fatalf("after interval: %v", err)
	}
	if got := is.Fetches(); got != 3 {
		t.Fatalf("fetches after interval: got %d, want 3", got)
	}
}

func TestJWTConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  oauth.JWTConfig
		want string // substring of the error; "" means valid
	}{
		{"valid", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{Issuer: "https://i", JWKSURL: "https://i/jwks", Audience: "a"}}}, ""},
		{"audience required", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{Issuer: "https://i", JWKSURL: "https://i/jwks"}}}, "audience: required"},
		{"both audience settings", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{Issuer: "https://i", JWKSURL: "https://i/jwks", Audience: "a", DisableAudienceValidation: true}}}, "both set"},
		{"global both audience settings", oauth.JWTConfig{JWKSURL: "https://g", Audience: "a", DisableAudienceValidation: true}, "both set"},
		{"HMAC", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{Issuer: "https://i", JWKSURL: "https://i/jwks", Audience: "a", Algorithms: []string{"HS256"}}}}, `"HS256" is not allowed`},
		{"none", oauth.JWTConfig{JWKSURL: "https://g", Audience: "a", Algorithms: []string{"none"}}, `"none" is not allowed`},
		{"duplicate issuer", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{
			{Issuer: "https://i", JWKSURL: "https://i/jwks", Audience: "a"}, {Issuer: "https://i", JWKSURL: "https://i/jwks", Audience: "a"}}}, "listed twice"},
		{"missing jwks", oauth.JWTConfig{Issuers: []oauth.IssuerConfig{{Issuer: "https://i", Audience: "a"}}}, "jwks_url: required"},
		{"reserved claim", oauth.JWTConfig{JWKSURL: "https://g", Audience: "a", ClaimMapping: oauth.ClaimMapping{Roles: "toolgate_roles"}}, "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: got %v, want error containing %q", err, tc.want)
			}
			if _, err := oauth.NewJWTValidator(tc.cfg); err == nil {
				t.Errorf("NewJWTValidator accepted an invalid config")
			}
		})
	}
}

func BenchmarkJWTValidate(b *testing.B) {
	is := oauthtest.NewIssuer(b)
	v, err := oauth.NewJWTValidator(oauth.JWTConfig{
		Issuers:    []oauth.IssuerConfig{{Issuer: is.URL, JWKSURL: is.JWKSURL(), Audience: "tg", ClaimMapping: oauth.ClaimMapping{TeamIDs: "groups"}}},
		HTTPClient: devFetch,
	})
	if err != nil {
		b.Fatal(err)
	}
	c := is.Claims("user-1", "tg")
	c["groups"] = []string{"a", "b"}
	c["scope"] = "mcp"
	tok := is.Sign(b, c)
	ctx := context.Background()
	if _, err := v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzJWTValidate(f *testing.F) {
	is := oauthtest.NewIssuer(f)
	v, err := oauth.NewJWTValidator(oauth.JWTConfig{
		Issuers:            []oauth.IssuerConfig{{Issuer: is.URL, JWKSURL: is.JWKSURL(), Audience: "tg"}},
		MinRefreshInterval: time.Hour,
		HTTPClient:         devFetch,
	})
	if err != nil {
		f.Fatal(err)
	}
	good := is.Sign(f, is.Claims("u", "tg"))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("eyJ..")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Validate(context.Background(), tok)
		if err == nil && tok != good {
			// Only tokens signed by the issuer can pass; the fuzzer cannot forge one.
			if p.Issuer != is.URL {
				t.Fatalf("accepted forged token %q", tok)
			}
		}
		if err != nil {
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error is not *oauth.Error: %v", err)
			}
		}
	})
}
