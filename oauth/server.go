package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/toolgate/toolgate/store"
)

// Token prefixes, so admission can tell a gateway-issued token from a virtual key or a JWT.
const (
	AccessTokenPrefix  = "tgat_"
	RefreshTokenPrefix = "tgrt_"
	clientIDPrefix     = "tgc_"
	clientSecretPrefix = "tgcs_"
)

// Defaults used when ServerConfig leaves a field zero.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 2 * time.Minute
	DefaultRequestTTL      = 10 * time.Minute
)

// Grant types the authorization server supports.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

const stateAuthorize = "authorize"

// Store is the persistence the authorization server needs; store.OAuthStore satisfies it.
type Store interface {
	CreateOAuthClient(ctx context.Context, c *store.OAuthClient) error
	OAuthClient(ctx context.Context, id string) (*store.OAuthClient, error)
	CreateOAuthCode(ctx context.Context, c *store.OAuthCode) error
	ConsumeOAuthCode(ctx context.Context, codeHash string) (*store.OAuthCode, error)
	CreateOAuthToken(ctx context.Context, t *store.OAuthToken) error
	OAuthToken(ctx context.Context, tokenHash string) (*store.OAuthToken, error)
	RevokeOAuthToken(ctx context.Context, tokenHash string) error
	RevokeOAuthTokenFamily(ctx context.Context, familyID string) (int64, error)
	CreateOAuthState(ctx context.Context, s *store.OAuthState) error
	ConsumeOAuthState(ctx context.Context, id, kind string) (*store.OAuthState, error)
}

// Sweeper is an optional interface of a Store: when implemented, the server deletes
// expired codes, states and tokens at most once per SweepInterval, on a request that
// creates new ones.
type Sweeper interface {
	DeleteExpiredOAuth(ctx context.Context, before time.Time) (int64, error)
}

// SweepInterval is the least time between two sweeps of expired records.
const SweepInterval = 10 * time.Minute

// ErrInvalidKey is returned by a KeyVerifier for a key it does not accept.
var ErrInvalidKey = errors.New("invalid key")

// KeyVerifier checks the toolgate key a user pastes on the login page. The gateway
// implements it.
type KeyVerifier interface {
	// VerifyKey returns the subject tokens will be issued to (e.g. "key:<id>") for a valid,
	// unblocked, unexpired key, or an error (ErrInvalidKey for a key it does not accept).
	// Safe for concurrent use.
	VerifyKey(ctx context.Context, secret string) (subject string, err error)
}

// SubjectChecker is an optional interface of a KeyVerifier: when implemented, every
// introspection and refresh checks that the subject still exists and may act, so revoking
// or blocking a key revokes the tokens issued for it at once.
type SubjectChecker interface {
	// CheckSubject returns nil while subject may still use tokens.
	CheckSubject(ctx context.Context, subject string) error
}

// ServerConfig configures the gateway's authorization server.
type ServerConfig struct {
	// Resource gives the issuer (its public URL) and the resources tokens may be bound to.
	// Required.
	Resource *Resource
	// Store persists clients, codes, states and tokens. Required.
	Store Store
	// Keys verifies the key pasted on the login page. Required unless AutoApprove or IdP
	// is set.
	Keys KeyVerifier
	// IdP, if set, replaces the key field of the login page: after the user approves the
	// client, the browser signs in at this OpenID Connect provider.
	IdP *IdPConfig
	// AutoApprove, if set, approves authorization requests without a login page, as the
	// subject it returns. For tests and development only.
	AutoApprove func(r *http.Request) (subject string, ok bool)

	// Scopes the server grants. If nil, the Resource's supported scopes.
	Scopes []string
	// Token and code lifetimes. Zero values use the Default* constants.
	AccessTokenTTL, RefreshTokenTTL, CodeTTL, RequestTTL time.Duration

	// ClientMetadataDocuments accepts https URLs as client IDs and fetches their Client ID
	// Metadata Documents (client_id_metadata_document_supported).
	ClientMetadataDocuments bool
	// HTTPClient fetches client metadata documents. If nil, NewHTTPClient(FetchConfig{}).
	HTTPClient *http.Client

	// Logger receives errors. If nil, logs are discarded.
	Logger *slog.Logger
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Server is the gateway as an OAuth 2.1 authorization server for its own MCP routes:
// RFC 8414 metadata, /authorize with a login and consent page, /token (authorization_code
// with PKCE S256, refresh_token with rotation, client_credentials), /register (RFC 7591)
// and Client ID Metadata Documents. Tokens are opaque and stored hashed. It is safe for
// concurrent use.
type Server struct {
	cfg    ServerConfig
	res    *Resource
	st     Store
	log    *slog.Logger
	now    func() time.Time
	client *http.Client
	issuer string
	secure bool // https issuer: __Host- cookies
	cimd   *expirable.LRU[string, *store.OAuthClient]
	idp    *idp // nil unless ServerConfig.IdP

	sweepMu   sync.Mutex
	lastSweep time.Time
}

// NewServer validates cfg and returns a Server. It does no I/O.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Resource == nil {
		return nil, errors.New("oauth: ServerConfig.Resource is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("oauth: ServerConfig.Store is required")
	}
	if cfg.Keys == nil && cfg.AutoApprove == nil && cfg.IdP == nil {
		return nil, errors.New("oauth: ServerConfig.Keys is required")
	}
	if cfg.Scopes == nil {
		cfg.Scopes = cfg.Resource.cfg.ScopesSupported
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.AccessTokenTTL, DefaultAccessTokenTTL}, {&cfg.RefreshTokenTTL, DefaultRefreshTokenTTL},
		{&cfg.CodeTTL, DefaultCodeTTL}, {&cfg.RequestTTL, DefaultRequestTTL}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	s := &Server{cfg: cfg, res: cfg.Resource, st: cfg.Store, log: cfg.Logger, now: cfg.Now, client: cfg.HTTPClient}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.client == nil {
		s.client = NewHTTPClient(FetchConfig{})
	}
	s.issuer = s.res.ResourceURL("")
	s.secure = s.res.base.Scheme == "https"
	s.cimd = expirable.NewLRU[string, *store.OAuthClient](256, nil, 5*time.Minute)
	if cfg.IdP != nil {
		p, err := newIdP(*cfg.IdP, s.issuer+IdPCallbackPath, s.client, s.now)
		if err != nil {
			return nil, err
		}
		s.idp = p
	}
	return s, nil
}

// Issuer is the server's issuer identifier (the gateway's public URL).
func (s *Server) Issuer() string { return s.issuer }

// endpoint returns the absolute URL of one of the server's endpoints.
func (s *Server) endpoint(name string) string { return s.issuer + "/" + name }

// AuthServerMetadata is an RFC 8414 authorization server metadata document.
type AuthServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameter bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported,omitempty"`
	ResourceIndicatorsSupported       bool     `json:"resource_indicators_supported,omitempty"`
}

// Metadata returns the server's RFC 8414 metadata.
func (s *Server) Metadata() *AuthServerMetadata {
	return &AuthServerMetadata{
		Issuer:                            s.issuer,
		AuthorizationEndpoint:             s.endpoint("authorize"),
		TokenEndpoint:                     s.endpoint("token"),
		RegistrationEndpoint:              s.endpoint("register"),
		ScopesSupported:                   s.cfg.Scopes,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials},
		TokenEndpointAuthMethodsSupported: []string{"none", "client_secret_post", "client_secret_basic"},
		CodeChallengeMethodsSupported:     []string{"S256"},
		AuthorizationResponseIssParameter: true,
		ClientIDMetadataDocumentSupported: s.cfg.ClientMetadataDocuments,
		ResourceIndicatorsSupported:       true,
	}
}

// oidcMetadata adds the fields OpenID Connect Discovery requires, for clients that only
// try /.well-known/openid-configuration. The server issues no ID tokens.
type oidcMetadata struct {
	*AuthServerMetadata
	SubjectTypes []string `json:"subject_types_supported"`
	IDTokenAlgs  []string `json:"id_token_signing_alg_values_supported"`
}

// Well-known paths of the authorization server metadata.
const (
	WellKnownAuthServer = "/.well-known/oauth-authorization-server"
	WellKnownOpenID     = "/.well-known/openid-configuration"
)

// Paths returns the request paths the gateway must route to s (each also with a trailing
// slash for the path-aware variants where it ends in a well-known name): the three
// endpoints and the metadata documents, with and without the root path.
func (s *Server) Paths() []string {
	root := s.res.root
	ps := []string{WellKnownAuthServer, WellKnownAuthServer + "/", WellKnownOpenID, WellKnownOpenID + "/",
		"/authorize", "/token", "/register"}
	if root != "" {
		ps = append(ps, root+WellKnownOpenID, root+WellKnownAuthServer, root+"/authorize", root+"/token", root+"/register")
	}
	return append(ps, s.idpPaths()...)
}

// ServeHTTP routes to the metadata documents and the three endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := s.res.RoutePath(r.URL.Path)
	switch {
	case p == "/authorize":
		s.handleAuthorize(w, r)
	case p == "/token":
		s.handleToken(w, r)
	case p == "/register":
		s.handleRegister(w, r)
	case p == IdPCallbackPath && s.idp != nil:
		s.handleIdPCallback(w, r)
	case strings.HasPrefix(r.URL.Path, WellKnownAuthServer), strings.HasPrefix(r.URL.Path, WellKnownOpenID),
		strings.HasSuffix(p, WellKnownOpenID), strings.HasSuffix(p, WellKnownAuthServer):
		s.handleMetadata(w, r)
	default:
		http.NotFound(w, r)
	}
}

// handleMetadata serves RFC 8414 metadata at /.well-known/oauth-authorization-server{root}
// and the OpenID variants /.well-known/openid-configuration{root} and
// {root}/.well-known/openid-configuration. A path naming another issuer gets 404.
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	corsHeaders(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	oidc := strings.Contains(path, WellKnownOpenID)
	var suffix string
	switch {
	case strings.HasPrefix(path, WellKnownAuthServer):
		suffix = strings.TrimPrefix(path, WellKnownAuthServer)
	case strings.HasPrefix(path, WellKnownOpenID):
		suffix = strings.TrimPrefix(path, WellKnownOpenID)
	default: // {root}/.well-known/...
		suffix = path[:strings.Index(path, "/.well-known/")]
	}
	if suffix != "" && suffix != s.res.root {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	md := s.Metadata()
	if oidc {
		writeJSON(w, http.StatusOK, oidcMetadata{AuthServerMetadata: md, SubjectTypes: []string{"public"}, IDTokenAlgs: []string{"RS256"}})
		return
	}
	writeJSON(w, http.StatusOK, md)
}

// Grant is what a gateway-issued access token stands for.
type Grant struct {
	Subject   string // as returned by KeyVerifier.VerifyKey (or "client:<id>" for client_credentials)
	ClientID  string
	Scopes    []string
	Resource  string // RFC 8707 audience; the gateway's public URL means every route
	ExpiresAt time.Time
}

// Covers reports whether the grant's audience includes the resource at resourceURL: the
// same URL, or a route below it.
func (g *Grant) Covers(resourceURL string) bool {
	return g.Resource == resourceURL || strings.HasPrefix(resourceURL, strings.TrimSuffix(g.Resource, "/")+"/")
}

// HasScope reports whether the grant carries scope.
func (g *Grant) HasScope(scope string) bool { return slices.Contains(g.Scopes, scope) }

// IsAccessToken reports whether s has the shape of an access token issued by Server.
func IsAccessToken(s string) bool { return strings.HasPrefix(s, AccessTokenPrefix) }

// Introspect resolves an access token issued by s. Errors are *Error values (401
// invalid_token) wrapping ErrMalformedToken, ErrExpired or ErrRevoked; a store failure is
// returned as is.
func (s *Server) Introspect(ctx context.Context, token string) (*Grant, error) {
	if !IsAccessToken(token) {
		return nil, invalidToken(ErrMalformedToken, "token is not valid")
	}
	t, err := s.st.OAuthToken(ctx, hashSecret(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidToken(ErrRevoked, "token is not valid")
	}
	if err != nil {
		return nil, fmt.Errorf("introspect: %w", err)
	}
	switch {
	case t.Kind != store.TokenAccess:
		return nil, invalidToken(ErrMalformedToken, "token is not valid")
	case t.Revoked:
		return nil, invalidToken(ErrRevoked, "token revoked")
	case !s.now().Before(t.ExpiresAt):
		return nil, invalidToken(ErrExpired, "token expired")
	}
	if err := s.checkSubject(ctx, t.Subject); err != nil {
		return nil, invalidToken(fmt.Errorf("%w: %v", ErrRevoked, err), "token revoked")
	}
	return &Grant{Subject: t.Subject, ClientID: t.ClientID, Scopes: strings.Fields(t.Scope),
		Resource: t.Resource, ExpiresAt: t.ExpiresAt}, nil
}

func (s *Server) checkSubject(ctx context.Context, subject string) error {
	if sc, ok := s.cfg.Keys.(SubjectChecker); ok && s.cfg.Keys != nil && !strings.HasPrefix(subject, "client:") {
		return sc.CheckSubject(ctx, subject)
	}
	return nil
}

// maybeSweep deletes expired records if the store can and the last sweep is old enough.
func (s *Server) maybeSweep(ctx context.Context) {
	sw, ok := s.st.(Sweeper)
	if !ok {
		return
	}
	now := s.now()
	s.sweepMu.Lock()
	if now.Sub(s.lastSweep) < SweepInterval {
		s.sweepMu.Unlock()
		return
	}
	s.lastSweep = now
	s.sweepMu.Unlock()
	// Keep expired tokens for a day so a late refresh replay is still recognized.
	if n, err := sw.DeleteExpiredOAuth(ctx, now.Add(-24*time.Hour)); err != nil {
		s.log.WarnContext(ctx, "oauth: sweep expired records", "err", err)
	} else if n > 0 {
		s.log.DebugContext(ctx, "oauth: swept expired records", "n", n)
	}
}

// randomToken returns prefix + 256 random bits, base64url.
func randomToken(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is the stored form of a token, code or secret: hex SHA-256.
func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func equalSecret(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// acceptsResource reports whether u may be a token audience: the gateway's public URL or
// an MCP route below it, without fragment.
func (s *Server) acceptsResource(u string) bool {
	if u == s.issuer {
		return true
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Fragment != "" || pu.RawQuery != "" || !strings.HasPrefix(u, s.issuer+"/") {
		return false
	}
	return s.res.cfg.IsMCPPath(strings.TrimPrefix(u, s.issuer))
}

// grantScopes returns the requested scopes if all are supported (the defaults when none
// are asked for), else false.
func (s *Server) grantScopes(requested string) (string, bool) {
	req := strings.Fields(requested)
	if len(req) == 0 {
		return strings.Join(s.cfg.Scopes, " "), true
	}
	for _, sc := range req {
		if !slices.Contains(s.cfg.Scopes, sc) {
			return "", false
		}
	}
	return strings.Join(req, " "), true
}
