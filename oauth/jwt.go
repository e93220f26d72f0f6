package oauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Defaults used when JWTConfig leaves a field zero.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultKeySetTTL          = time.Hour
	maxTokenBytes             = 16 << 10
)

// DefaultAlgorithms is the algorithm allow-list when an issuer names none.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// asymmetricAlgs are the only algorithms a configuration may allow: never none, never HMAC.
var asymmetricAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// ClaimMapping names the claims a verified token's identity is read from. Names may be
// dotted paths into nested objects ("realm_access.roles"). Empty fields use the default
// given on each.
type ClaimMapping struct {
	UserID  string `yaml:"user_id_jwt_field" json:"user_id_jwt_field,omitempty"`   // default "sub"
	TeamID  string `yaml:"team_id_jwt_field" json:"team_id_jwt_field,omitempty"`   // default: none
	TeamIDs string `yaml:"team_ids_jwt_field" json:"team_ids_jwt_field,omitempty"` // default: none
	OrgID   string `yaml:"org_id_jwt_field" json:"org_id_jwt_field,omitempty"`     // default: none
	Roles   string `yaml:"roles_jwt_field" json:"roles_jwt_field,omitempty"`       // default: none
	Scopes  string `yaml:"scope_jwt_field" json:"scope_jwt_field,omitempty"`       // default "scope", then "scp"
}

func (m ClaimMapping) fields() []string {
	return []string{m.UserID, m.TeamID, m.TeamIDs, m.OrgID, m.Roles, m.Scopes}
}

// IssuerConfig trusts one token issuer: its tokens are verified with its key set only.
type IssuerConfig struct {
	Issuer string `yaml:"issuer" json:"issuer"` // exact iss value; required
	// JWKSURL is the issuer's key set; required.
	JWKSURL string `yaml:"jwks_url" json:"jwks_url"`
	// Audience must appear in the token's aud. Required unless DisableAudienceValidation.
	Audience string `yaml:"audience" json:"audience,omitempty"`
	// DisableAudienceValidation accepts any aud. Setting it together with Audience is an
	// error.
	DisableAudienceValidation bool `yaml:"disable_audience_validation" json:"disable_audience_validation,omitempty"`
	// Algorithms is the allow-list of JWS algorithms (asymmetric only). If nil,
	// DefaultAlgorithms.
	Algorithms   []string `yaml:"algorithms" json:"algorithms,omitempty"`
	ClaimMapping `yaml:",inline" json:",inline"`
}

// JWTConfig configures a JWTValidator: issuer-scoped key sets plus an optional global one
// for tokens whose iss is not listed. It mirrors the jwt_auth config section.
type JWTConfig struct {
	Issuers []IssuerConfig `yaml:"issuers" json:"issuers,omitempty"`

	// JWKSURL is the global key set, used for tokens whose iss matches no entry of Issuers.
	// If empty, such tokens are refused with ErrUnknownIssuer.
	JWKSURL                   string   `yaml:"jwks_url" json:"jwks_url,omitempty"`
	Audience                  string   `yaml:"audience" json:"audience,omitempty"`
	DisableAudienceValidation bool     `yaml:"disable_audience_validation" json:"disable_audience_validation,omitempty"`
	Algorithms                []string `yaml:"algorithms" json:"algorithms,omitempty"`
	ClaimMapping              `yaml:",inline" json:",inline"`

	// Leeway is the clock skew allowed on exp, nbf and iat. If zero, DefaultLeeway.
	Leeway time.Duration `yaml:"leeway" json:"leeway,omitempty"`
	// MinRefreshInterval bounds how often a key set is re-fetched because a token named an
	// unknown kid. If zero, DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration `yaml:"min_refresh_interval" json:"min_refresh_interval,omitempty"`
	// KeySetTTL is how long a fetched key set is used before it is fetched again. If zero,
	// DefaultKeySetTTL.
	KeySetTTL time.Duration `yaml:"key_set_ttl" json:"key_set_ttl,omitempty"`

	// HTTPClient fetches key sets. If nil, NewHTTPClient(FetchConfig{}).
	HTTPClient *http.Client `yaml:"-" json:"-"`
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time `yaml:"-" json:"-"`
}

// Enabled reports whether any issuer or a global key set is configured.
func (c *JWTConfig) Enabled() bool { return len(c.Issuers) > 0 || c.JWKSURL != "" }

// Validate reports every problem with c at once.
func (c *JWTConfig) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		where := fmt.Sprintf("jwt_auth.issuers[%d]", i)
		if is.Issuer == "" {
			errs = append(errs, fmt.Errorf("%s.issuer: required", where))
		} else if seen[is.Issuer] {
			errs = append(errs, fmt.Errorf("%s.issuer: %q listed twice", where, is.Issuer))
		}
		seen[is.Issuer] = true
		if is.JWKSURL == "" {
			errs = append(errs, fmt.Errorf("%s.jwks_url: required", where))
		}
		errs = append(errs, checkPath(where, is.Audience, is.DisableAudienceValidation, is.Algorithms, is.ClaimMapping)...)
	}
	if c.JWKSURL != "" {
		errs = append(errs, checkPath("jwt_auth", c.Audience, c.DisableAudienceValidation, c.Algorithms, c.ClaimMapping)...)
	}
	return errors.Join(errs...)
}

func checkPath(where, aud string, noAud bool, algs []string, m ClaimMapping) []error {
	var errs []error
	switch {
	case aud != "" && noAud:
		errs = append(errs, fmt.Errorf("%s: audience and disable_audience_validation are both set", where))
	case aud == "" && !noAud:
		errs = append(errs, fmt.Errorf("%s.audience: required unless disable_audience_validation is true", where))
	}
	for _, a := range algs {
		if !asymmetricAlgs[a] {
			errs = append(errs, fmt.Errorf("%s.algorithms: %q is not allowed (asymmetric algorithms only)", where, a))
		}
	}
	for _, f := range m.fields() {
		if f != "" && InternalClaim(strings.SplitN(f, ".", 2)[0]) {
			errs = append(errs, fmt.Errorf("%s: claim %q is reserved for the gateway", where, f))
		}
	}
	return errs
}

// InternalClaim reports whether a top-level claim name is shaped like the gateway's own
// request state. Such claims are stripped from every verified token and may not be mapped.
func InternalClaim(name string) bool {
	n := strings.ToLower(name)
	for _, p := range []string{"toolgate", "x-toolgate", "_toolgate", "x-litellm", "litellm_metadata", "user_api_key"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	switch n {
	case "principal", "principal_kind", "kind", "admin", "is_admin", "key", "key_id", "api_key",
		"user_role", "master_key", "token_hash":
		return true
	}
	return false
}

// Principal is who a verified token says the caller is.
type Principal struct {
	Issuer    string
	Subject   string // sub
	UserID    string // from ClaimMapping.UserID (default sub)
	TeamID    string
	TeamIDs   []string
	OrgID     string
	Roles     []string
	Scopes    []string
	Audience  []string
	ExpiresAt time.Time
	// Claims are the verified claims, without the internal-looking ones (see InternalClaim).
	Claims map[string]any
}

// JWTValidator verifies bearer JWTs against issuer-scoped key sets. It is safe for
// concurrent use.
type JWTValidator struct {
	cfg     JWTConfig
	client  *http.Client
	now     func() time.Time
	issuers map[string]*issuerPath
	global  *issuerPath
	cache   *expirable.LRU[string, *keySet]
}

// issuerPath is one way a token can be verified: an issuer entry, or the global set.
type issuerPath struct {
	name     string // issuer, or "" for the global path
	jwksURL  string
	audience string
	noAud    bool
	algs     map[string]jws.Verifier
	claims   ClaimMapping

	mu        sync.Mutex // serializes fetches
	lastFetch time.Time
}

// keySet is a parsed JWKS: public keys by kid.
type keySet struct {
	keys    map[string]publicKey
	fetched time.Time
}

type publicKey struct {
	alg string // the JWK's alg, or ""
	raw any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// NewJWTValidator validates cfg and returns a validator. It does no I/O: key sets are
// fetched on first use.
func NewJWTValidator(cfg JWTConfig) (*JWTValidator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.KeySetTTL <= 0 {
		cfg.KeySetTTL = DefaultKeySetTTL
	}
	v := &JWTValidator{cfg: cfg, client: cfg.HTTPClient, now: cfg.Now, issuers: map[string]*issuerPath{}}
	if v.client == nil {
		v.client = NewHTTPClient(FetchConfig{})
	}
	if v.now == nil {
		v.now = time.Now
	}
	n := len(cfg.Issuers) + 1
	v.cache = expirable.NewLRU[string, *keySet](n*2, nil, cfg.KeySetTTL)
	for _, is := range cfg.Issuers {
		p, err := newIssuerPath(is.Issuer, is.JWKSURL, is.Audience, is.DisableAudienceValidation, is.Algorithms, is.ClaimMapping)
		if err != nil {
			return nil, err
		}
		v.issuers[is.Issuer] = p
	}
	if cfg.JWKSURL != "" {
		p, err := newIssuerPath("", cfg.JWKSURL, cfg.Audience, cfg.DisableAudienceValidation, cfg.Algorithms, cfg.ClaimMapping)
		if err != nil {
			return nil, err
		}
		v.global = p
	}
	return v, nil
}

func newIssuerPath(name, url, aud string, noAud bool, algs []string, m ClaimMapping) (*issuerPath, error) {
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	p := &issuerPath{name: name, jwksURL: url, audience: aud, noAud: noAud, algs: map[string]jws.Verifier{}, claims: m}
	for _, a := range algs {
		vf, err := jws.NewVerifier(jwa.SignatureAlgorithm(a))
		if err != nil {
			return nil, fmt.Errorf("jwt_auth: algorithm %s: %w", a, err)
		}
		p.algs[a] = vf
	}
	if p.claims.UserID == "" {
		p.claims.UserID = "sub"
	}
	return p, nil
}

func (p *issuerPath) cacheKey() string { return p.name + "\x00" + p.jwksURL }

// jwsHeader is the part of a JWS protected header the validator reads.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
	B64  *bool           `json:"b64"`
}

// LooksLikeJWT reports whether s has the shape of a compact JWS (three dot-separated
// parts), so admission can route it to Validate rather than to key lookup.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

// Validate verifies token and returns the principal it names. Errors are *Error values
// wrapping one of ErrMalformedToken, ErrUnknownIssuer, ErrAlgorithm, ErrUnknownKey,
// ErrSignature, ErrExpired, ErrNotYetValid, ErrAudience (all 401 invalid_token), or
// ErrKeySet (503).
func (v *JWTValidator) Validate(ctx context.Context, token string) (*Principal, error) {
	if len(token) > maxTokenBytes {
		return nil, invalidToken(ErrMalformedToken, "token too large")
	}
	h64, rest, ok := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || h64 == "" || p64 == "" || strings.Contains(s64, ".") {
		return nil, invalidToken(ErrMalformedToken, "token is not a compact JWS")
	}
	var hdr jwsHeader
	if err := decodeSegment(h64, &hdr); err != nil {
		return nil, invalidToken(fmt.Errorf("%w: header: %v", ErrMalformedToken, err), "malformed token header")
	}
	if len(hdr.Crit) > 0 || hdr.B64 != nil {
		return nil, invalidToken(ErrMalformedToken, "unsupported critical header")
	}
	var claims map[string]any
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return nil, invalidToken(fmt.Errorf("%w: payload: %v", ErrMalformedToken, err), "malformed token payload")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, invalidToken(fmt.Errorf("%w: payload: %v", ErrMalformedToken, err), "malformed token payload")
	}
	// Choose the verification path from the (not yet trusted) iss; the signature check
	// below binds the choice, since only that issuer's keys are tried.
	iss, _ := claims["iss"].(string)
	path := v.issuers[iss]
	if path == nil {
		path = v.global
	}
	if path == nil {
		return nil, invalidToken(fmt.Errorf("%w: %q", ErrUnknownIssuer, iss), "token issuer is not trusted")
	}
	verifier, ok := path.algs[hdr.Alg]
	if !ok {
		return nil, invalidToken(fmt.Errorf("%w: %q", ErrAlgorithm, hdr.Alg), "token algorithm is not allowed")
	}
	sig, err := base64.RawURLEncoding.DecodeString(s64)
	if err != nil || len(sig) == 0 {
		return nil, invalidToken(ErrMalformedToken, "malformed token signature")
	}
	key, err := v.key(ctx, path, hdr.Kid, hdr.Alg)
	if err != nil {
		return nil, err
	}
	if err := verifier.Verify([]byte(token[:len(h64)+1+len(p64)]), sig, key); err != nil {
		return nil, invalidToken(fmt.Errorf("%w: %v", ErrSignature, err), "token signature is invalid")
	}
	if path.name != "" && iss != path.name {
		return nil, invalidToken(ErrIssuerMismatch, "token issuer is not trusted")
	}
	return v.principal(path, iss, claims)
}

func decodeSegment(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// principal checks the time and audience claims and maps the identity claims.
func (v *JWTValidator) principal(path *issuerPath, iss string, claims map[string]any) (*Principal, error) {
	now := v.now()
	leeway := v.cfg.Leeway
	exp, ok, err := numericDate(claims, "exp")
	if err != nil || !ok {
		return nil, invalidToken(fmt.Errorf("%w: exp: missing or invalid", ErrMalformedToken), "token has no valid exp")
	}
	if !now.Before(exp.Add(leeway)) {
		return nil, invalidToken(ErrExpired, "token expired")
	}
	for _, name := range []string{"nbf", "iat"} {
		t, ok, err := numericDate(claims, name)
		if err != nil {
			return nil, invalidToken(fmt.Errorf("%w: %s: %v", ErrMalformedToken, name, err), "token has an invalid "+name)
		}
		if ok && t.After(now.Add(leeway)) {
			return nil, invalidToken(ErrNotYetValid, "token not yet valid")
		}
	}
	aud := stringsClaim(claims["aud"])
	if !path.noAud && !contains(aud, path.audience) {
		return nil, invalidToken(fmt.Errorf("%w: got %q, want %q", ErrAudience, aud, path.audience), "token audience is not accepted")
	}
	for k := range claims {
		if InternalClaim(k) {
			delete(claims, k)
		}
	}
	m := path.claims
	p := &Principal{
		Issuer:    iss,
		Audience:  aud,
		ExpiresAt: exp,
		Claims:    claims,
	}
	p.Subject, _ = claims["sub"].(string)
	p.UserID = stringClaim(lookup(claims, m.UserID))
	p.TeamID = stringClaim(lookup(claims, m.TeamID))
	p.TeamIDs = stringsClaim(lookup(claims, m.TeamIDs))
	p.OrgID = stringClaim(lookup(claims, m.OrgID))
	p.Roles = stringsClaim(lookup(claims, m.Roles))
	if m.Scopes != "" {
		p.Scopes = scopesClaim(lookup(claims, m.Scopes))
	} else if s, ok := claims["scope"]; ok {
		p.Scopes = scopesClaim(s)
	} else {
		p.Scopes = scopesClaim(claims["scp"])
	}
	return p, nil
}

// lookup follows a dotted path into nested objects. An empty path finds nothing.
func lookup(claims map[string]any, path string) any {
	if path == "" {
		return nil
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func stringClaim(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

func stringsClaim(v any) []string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s := stringClaim(e); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func scopesClaim(v any) []string {
	if s, ok := v.(string); ok {
		return strings.Fields(s)
	}
	return stringsClaim(v)
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e12 {
		return time.Time{}, false, fmt.Errorf("%s is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// key returns the public key for kid from path's key set, fetching the set when it is not
// cached and re-fetching it (at most once per MinRefreshInterval) when kid is unknown.
func (v *JWTValidator) key(ctx context.Context, path *issuerPath, kid, alg string) (any, error) {
	if ks, ok := v.cache.Get(path.cacheKey()); ok {
		if k, ok := ks.find(kid, alg); ok {
			return k, nil
		}
	}
	path.mu.Lock()
	defer path.mu.Unlock()
	// Another caller may have refreshed while this one waited.
	ks, cached := v.cache.Get(path.cacheKey())
	if cached {
		if k, ok := ks.find(kid, alg); ok {
			return k, nil
		}
		if v.now().Sub(path.lastFetch) < v.cfg.MinRefreshInterval {
			return nil, invalidToken(fmt.Errorf("%w: kid %q", ErrUnknownKey, kid), "token signing key is unknown")
		}
	} else if !path.lastFetch.IsZero() && v.now().Sub(path.lastFetch) < v.cfg.MinRefreshInterval {
		// The last fetch failed recently: do not hammer the issuer.
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavail,
			Description: "signing keys unavailable", Err: ErrKeySet}
	}
	path.lastFetch = v.now()
	ks, err := v.fetchKeySet(ctx, path.jwksURL)
	if err != nil {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavail,
			Description: "signing keys unavailable", Err: fmt.Errorf("%w: %v", ErrKeySet, err)}
	}
	v.cache.Add(path.cacheKey(), ks)
	if k, ok := ks.find(kid, alg); ok {
		return k, nil
	}
	return nil, invalidToken(fmt.Errorf("%w: kid %q", ErrUnknownKey, kid), "token signing key is unknown")
}

func (ks *keySet) find(kid, alg string) (any, bool) {
	k, ok := ks.keys[kid]
	if !ok && kid == "" && len(ks.keys) == 1 {
		for _, only := range ks.keys {
			k, ok = only, true
		}
	}
	if !ok || (k.alg != "" && k.alg != alg) || !keyFits(k.raw, alg) {
		return nil, false
	}
	return k.raw, true
}

// keyFits reports whether raw is the kind of public key alg verifies with.
func keyFits(raw any, alg string) bool {
	switch raw.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// fetchKeySet fetches and parses a JWKS, keeping only public signing keys.
func (v *JWTValidator) fetchKeySet(ctx context.Context, url string) (*keySet, error) {
	var raw json.RawMessage
	if err := fetchJSON(ctx, v.client, url, &raw); err != nil {
		return nil, err
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	ks := &keySet{keys: map[string]publicKey{}, fetched: v.now()}
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		if k.KeyUsage() == "enc" || k.KeyType() == "oct" {
			continue // never verify with encryption or symmetric keys
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			continue
		}
		var rawKey any
		if err := pub.Raw(&rawKey); err != nil {
			continue
		}
		alg := ""
		if a := k.Algorithm(); a != nil {
			alg = a.String()
		}
		ks.keys[k.KeyID()] = publicKey{alg: alg, raw: rawKey}
	}
	return ks, nil
}
