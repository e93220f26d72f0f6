package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
)

// oauthRoutes registers protected-resource discovery, the authorization server and the
// bearer-token authenticators, as configured by Config.OAuth. An invalid section (for
// example a jwt_auth issuer with neither audience nor disable_audience_validation, or
// both) is an error: New fails rather than starting with OAuth silently off.
func (s *Server) oauthRoutes(mux *http.ServeMux) error {
	if err := s.mountOAuth(mux, s.cfg.OAuth); err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	return nil
}

// mountOAuth does the work of oauthRoutes for an explicit configuration.
func (s *Server) mountOAuth(mux *http.ServeMux, cfg OAuthConfig) error {
	client := oauth.NewHTTPClient(cfg.Fetch)
	if cfg.JWTKeyClaim != "" && oauth.InternalClaim(cfg.JWTKeyClaim) {
		return fmt.Errorf("virtual_key_claim_field: claim %q is reserved for the gateway", cfg.JWTKeyClaim)
	}
	if cfg.JWT.Enabled() {
		jc := cfg.JWT
		if jc.HTTPClient == nil {
			jc.HTTPClient = client
		}
		v, err := oauth.NewJWTValidator(jc)
		if err != nil {
			return fmt.Errorf("jwt_auth: %w", err)
		}
		s.addTokenAuthenticator(s.jwtAuthenticator(v, cfg.JWTKeyClaim))
	}
	if cfg.PublicURL == "" {
		return nil
	}
	servers := cfg.AuthorizationServers
	if servers == nil && !cfg.AuthorizationServer {
		for _, is := range cfg.JWT.Issuers {
			servers = append(servers, is.Issuer)
		}
	}
	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: cfg.PublicURL, AuthorizationServers: servers,
		ScopesSupported: cfg.Scopes, ResourceName: "toolgate"})
	if err != nil {
		return err
	}
	st := &oauthState{res: res}
	s.oauth = st
	if err := s.mountUpstreamOAuth(mux, cfg, st, client); err != nil {
		return err
	}
	// The handler serves pass-through servers' own metadata on their routes.
	served, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: cfg.PublicURL, AuthorizationServers: servers,
		ScopesSupported: cfg.Scopes, ResourceName: "toolgate", Passthrough: st.pt})
	if err != nil {
		return err
	}
	mux.Handle(oauth.WellKnownResource, served)
	mux.Handle(oauth.WellKnownResource+"/", served)
	s.challenge = func(r *http.Request) string { return res.Challenge(mcpResourcePath(r.URL.Path), nil) }
	if !cfg.AuthorizationServer {
		return nil
	}
	var idp *oauth.IdPConfig
	if cfg.IdP != nil {
		c := *cfg.IdP
		c.Subject = s.idpSubject
		idp = &c
	}
	as, err := oauth.NewServer(oauth.ServerConfig{
		IdP:                     idp,
		Resource:                res,
		Store:                   s.store,
		Keys:                    oauthKeys{s},
		ClientMetadataDocuments: cfg.ClientMetadataDocuments,
		HTTPClient:              client,
		AccessTokenTTL:          cfg.AccessTokenTTL,
		RefreshTokenTTL:         cfg.RefreshTokenTTL,
		Logger:                  s.log.With("component", "oauth"),
		Now:                     s.now,
	})
	if err != nil {
		return err
	}
	for _, p := range as.Paths() {
		if strings.HasPrefix(p, oauth.WellKnownResource) {
			continue
		}
		mux.Handle(p, as)
		s.addRouteRule(p, false, classPublic)
	}
	st.as = as
	s.addTokenAuthenticator(s.oauthAuthenticator(as))
	return nil
}

// oauthKeys lets the login page sign in with the master key or a virtual key, and keeps
// issued tokens tied to that key: blocking, expiring or deleting it revokes them.
type oauthKeys struct{ s *Server }

var (
	_ oauth.KeyVerifier    = oauthKeys{}
	_ oauth.SubjectChecker = oauthKeys{}
)

// VerifyKey implements oauth.KeyVerifier.
func (k oauthKeys) VerifyKey(ctx context.Context, secret string) (string, error) {
	if secret == "" {
		return "", oauth.ErrInvalidKey
	}
	sum := sha256.Sum256([]byte(secret))
	k.s.mu.Lock()
	master := k.s.masterHash
	k.s.mu.Unlock()
	if len(master) == sha256.Size && subtle.ConstantTimeCompare(sum[:], master) == 1 {
		return "master_key", nil
	}
	p, err := k.s.keyPrincipal(ctx, hex.EncodeToString(sum[:]))
	if err != nil {
		var he *Error
		if errors.As(err, &he) && he.Status < 500 {
			return "", fmt.Errorf("%w: %s", oauth.ErrInvalidKey, he.Message)
		}
		return "", err
	}
	return p.Subject, nil
}

// CheckSubject implements oauth.SubjectChecker.
func (k oauthKeys) CheckSubject(ctx context.Context, subject string) error {
	_, err := k.s.subjectPrincipal(ctx, subject)
	return err
}

// subjectPrincipal resolves the subject a token was issued to ("master_key" or
// "key:<id>") to the principal of that key, through the admission cache.
func (s *Server) subjectPrincipal(ctx context.Context, subject string) (*Principal, error) {
	if subject == "master_key" {
		s.mu.Lock()
		ok := len(s.masterHash) == sha256.Size
		s.mu.Unlock()
		if !ok {
			return nil, errors.New("no master key")
		}
		return &Principal{Kind: KindMaster, Admin: true, Subject: "master_key"}, nil
	}
	if uid, ok := strings.CutPrefix(subject, "user:"); ok {
		u, err := s.store.User(ctx, uid)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", uid, err)
		}
		p := &Principal{Kind: KindOAuth, User: u, Admin: u.Role == store.RoleProxyAdmin, Subject: subject}
		if u.OrgID != "" {
			o, err := s.store.Org(ctx, u.OrgID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			p.Org = o
		}
		return p, nil
	}
	id, ok := strings.CutPrefix(subject, "key:")
	if !ok {
		return nil, fmt.Errorf("unknown subject kind %q", subject)
	}
	k, err := s.store.Key(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", id, err)
	}
	return s.keyPrincipal(ctx, k.TokenHash)
}

// idpSubject maps a user signed in at the configured identity provider onto an existing
// toolgate user.
func (s *Server) idpSubject(ctx context.Context, p *oauth.Principal) (string, error) {
	if p.UserID == "" {
		return "", errors.New("the ID token names no user")
	}
	u, err := s.store.User(ctx, p.UserID)
	if err != nil {
		return "", fmt.Errorf("user %q: %w", p.UserID, err)
	}
	return "user:" + u.ID, nil
}

// oauthAuthenticator admits access tokens issued by the gateway's authorization server.
// The token's RFC 8707 audience goes into Principal.Audience; admission checks it against
// the route being called (checkAudience). A token whose key was deleted, expired or
// blocked is refused: tokens live no longer than the key they were made from.
func (s *Server) oauthAuthenticator(as *oauth.Server) TokenAuthenticator {
	return func(ctx context.Context, token string) (*Principal, error) {
		if !oauth.IsAccessToken(token) {
			return nil, nil
		}
		g, err := as.Introspect(ctx, token)
		if err != nil {
			return nil, oauthError(err)
		}
		kp, err := s.subjectPrincipal(ctx, g.Subject)
		if err != nil {
			var he *Error
			if errors.As(err, &he) {
				return nil, he
			}
			return nil, &Error{Status: http.StatusUnauthorized, Type: "auth_error", Param: "api_key",
				Message: "token revoked", Err: err}
		}
		p := *kp
		p.Kind = KindOAuth
		p.Scopes = g.Scopes
		p.Audience = g.Resource
		return &p, nil
	}
}

// jwtAuthenticator admits JWTs from the configured issuers and maps their claims onto
// users, teams and orgs that exist in the store.
func (s *Server) jwtAuthenticator(v *oauth.JWTValidator, keyClaim string) TokenAuthenticator {
	return func(ctx context.Context, token string) (*Principal, error) {
		if !oauth.LooksLikeJWT(token) {
			return nil, nil
		}
		jp, err := v.Validate(ctx, token)
		if err != nil {
			return nil, oauthError(err)
		}
		if alias, _ := jp.Claims[keyClaim].(string); keyClaim != "" && alias != "" {
			k, err := s.store.KeyByAlias(ctx, alias)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			if k != nil {
				kp, err := s.keyPrincipal(ctx, k.TokenHash)
				if err != nil {
					return nil, err
				}
				p := *kp
				p.Kind = KindJWT
				p.Scopes = jp.Scopes
				return &p, nil
			}
		}
		p := &Principal{Kind: KindJWT, Scopes: jp.Scopes, Subject: "jwt:" + jp.Issuer + "#" + jp.Subject}
		if jp.UserID != "" {
			u, err := s.store.User(ctx, jp.UserID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			p.User = u
		}
		teamID := jp.TeamID
		if teamID == "" && len(jp.TeamIDs) > 0 {
			teamID = jp.TeamIDs[0]
		}
		if teamID != "" {
			t, err := s.store.Team(ctx, teamID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			if t != nil && t.Blocked {
				return nil, &Error{Status: http.StatusForbidden, Type: "blocked_team", Param: "api_key",
					Message: fmt.Sprintf("team %s is blocked", t.ID)}
			}
			p.Team = t
		}
		orgID := jp.OrgID
		if orgID == "" && p.Team != nil {
			orgID = p.Team.OrgID
		}
		if orgID != "" {
			o, err := s.store.Org(ctx, orgID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			p.Org = o
		}
		// The IdP vouches for who the user is; what the user may do is toolgate's record.
		p.Admin = p.User != nil && p.User.Role == store.RoleProxyAdmin
		return p, nil
	}
}

// oauthError maps an oauth error onto the gateway's wire error.
func oauthError(err error) error {
	status, oe := oauth.ErrorStatus(err)
	if status >= 500 {
		return &Error{Status: status, Message: oe.Description, Err: err}
	}
	typ := "auth_error"
	switch {
	case errors.Is(err, oauth.ErrExpired):
		typ = "expired_token"
	case errors.Is(err, oauth.ErrRevoked):
		typ = "revoked_token"
	}
	return &Error{Status: status, Type: typ, Param: "api_key", Message: oe.Description, Err: err}
}
