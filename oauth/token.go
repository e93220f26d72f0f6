package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// tokenResponse is an RFC 6749 §5.1 access token response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func grantError(code, desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// handleToken implements the token endpoint.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	corsHeaders(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.writeOAuthError(w, grantError(CodeInvalidRequest, "body is not a form"))
		return
	}
	resp, err := s.token(r.Context(), r)
	if err != nil {
		s.writeOAuthError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) token(ctx context.Context, r *http.Request) (*tokenResponse, error) {
	client, err := s.authenticateClient(ctx, r)
	if err != nil {
		return nil, err
	}
	grant := r.PostForm.Get("grant_type")
	if len(client.GrantTypes) > 0 && !slices.Contains(client.GrantTypes, grant) &&
		!(grant == GrantRefreshToken && slices.Contains(client.GrantTypes, GrantAuthorizationCode) && isMetadataDocumentID(client.ID)) {
		if grant != GrantAuthorizationCode && grant != GrantRefreshToken && grant != GrantClientCredentials {
			return nil, grantError(CodeUnsupportedGrantType, "unsupported grant_type")
		}
		return nil, grantError(CodeUnauthorizedClient, "client may not use this grant type")
	}
	switch grant {
	case GrantAuthorizationCode:
		return s.exchangeCode(ctx, client, r.PostForm)
	case GrantRefreshToken:
		return s.refresh(ctx, client, r.PostForm)
	case GrantClientCredentials:
		return s.clientCredentials(ctx, client, r.PostForm)
	case "":
		return nil, grantError(CodeInvalidRequest, "grant_type is required")
	}
	return nil, grantError(CodeUnsupportedGrantType, "unsupported grant_type")
}

// authenticateClient identifies the client: HTTP Basic, client_secret in the form, or a
// public client's client_id alone.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request) (*store.OAuthClient, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: "malformed client credentials"}
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return nil, grantError(CodeInvalidRequest, "client_id does not match the authenticated client")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, err := s.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.SecretHash != "" && !equalSecret(c.SecretHash, hashSecret(secret)) {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: "client authentication failed"}
	}
	return c, nil
}

// exchangeCode redeems an authorization code: single use, unexpired, same client and
// redirect URI, PKCE S256 verifier, same resource.
func (s *Server) exchangeCode(ctx context.Context, client *store.OAuthClient, f url.Values) (*tokenResponse, error) {
	code := f.Get("code")
	if code == "" {
		return nil, grantError(CodeInvalidRequest, "code is required")
	}
	verifier := f.Get("code_verifier")
	if verifier == "" {
		// Consume the code anyway: a request without the verifier must not leave it usable
		// for another try.
		s.st.ConsumeOAuthCode(ctx, hashSecret(code))
		return nil, grantError(CodeInvalidRequest, "code_verifier is required (PKCE)")
	}
	c, err := s.st.ConsumeOAuthCode(ctx, hashSecret(code))
	if errors.Is(err, store.ErrNotFound) {
		return nil, grantError(CodeInvalidGrant, "authorization code is invalid or was already used")
	}
	if err != nil {
		return nil, fmt.Errorf("consume code: %w", err)
	}
	switch {
	case !s.now().Before(c.ExpiresAt):
		return nil, grantError(CodeInvalidGrant, "authorization code expired")
	case c.ClientID != client.ID:
		return nil, grantError(CodeInvalidGrant, "authorization code was issued to another client")
	case f.Get("redirect_uri") != c.RedirectURI:
		return nil, grantError(CodeInvalidGrant, "redirect_uri does not match the authorization request")
	case !validVerifier(verifier) || !equalSecret(s256(verifier), c.CodeChallenge):
		return nil, grantError(CodeInvalidGrant, "code_verifier does not match the code_challenge")
	}
	if res := f.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != c.Resource {
		return nil, grantError(CodeInvalidTarget, "resource does not match the authorization request")
	}
	if err := s.checkSubject(ctx, c.Subject); err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant, Description: "the approving key is no longer valid", Err: err}
	}
	family := randomToken("")
	withRefresh := len(client.GrantTypes) == 0 || slices.Contains(client.GrantTypes, GrantRefreshToken) || isMetadataDocumentID(client.ID)
	return s.issueTokens(ctx, client.ID, c.Subject, c.Scope, c.Resource, family, withRefresh)
}

// refresh rotates a refresh token. Presenting a refresh token that was already rotated
// revokes its whole family (OAuth 2.1 §4.3.1 replay detection).
func (s *Server) refresh(ctx context.Context, client *store.OAuthClient, f url.Values) (*tokenResponse, error) {
	rt := f.Get("refresh_token")
	if rt == "" {
		return nil, grantError(CodeInvalidRequest, "refresh_token is required")
	}
	h := hashSecret(rt)
	t, err := s.st.OAuthToken(ctx, h)
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.Kind != store.TokenRefresh) {
		return nil, grantError(CodeInvalidGrant, "refresh token is invalid")
	}
	if err != nil {
		return nil, fmt.Errorf("look up refresh token: %w", err)
	}
	if t.ClientID != client.ID {
		return nil, grantError(CodeInvalidGrant, "refresh token was issued to another client")
	}
	if t.Revoked {
		if _, err := s.st.RevokeOAuthTokenFamily(ctx, t.FamilyID); err != nil {
			return nil, fmt.Errorf("revoke token family: %w", err)
		}
		return nil, grantError(CodeInvalidGrant, "refresh token was already used")
	}
	if !s.now().Before(t.ExpiresAt) {
		return nil, grantError(CodeInvalidGrant, "refresh token expired")
	}
	scope := t.Scope
	if req := f.Get("scope"); req != "" {
		granted := strings.Fields(t.Scope)
		for _, sc := range strings.Fields(req) {
			if !slices.Contains(granted, sc) {
				return nil, grantError(CodeInvalidScope, "scope exceeds the original grant")
			}
		}
		scope = strings.Join(strings.Fields(req), " ")
	}
	if res := f.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != t.Resource {
		return nil, grantError(CodeInvalidTarget, "resource does not match the original grant")
	}
	if err := s.checkSubject(ctx, t.Subject); err != nil {
		s.st.RevokeOAuthTokenFamily(ctx, t.FamilyID)
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant, Description: "the approving key is no longer valid", Err: err}
	}
	if err := s.st.RevokeOAuthToken(ctx, h); err != nil {
		if errors.Is(err, store.ErrConflict) { // a concurrent refresh won
			s.st.RevokeOAuthTokenFamily(ctx, t.FamilyID)
			return nil, grantError(CodeInvalidGrant, "refresh token was already used")
		}
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}
	return s.issueTokens(ctx, client.ID, t.Subject, scope, t.Resource, t.FamilyID, true)
}

// clientCredentials issues an access token to a confidential client acting for itself.
func (s *Server) clientCredentials(ctx context.Context, client *store.OAuthClient, f url.Values) (*tokenResponse, error) {
	if client.SecretHash == "" {
		return nil, grantError(CodeUnauthorizedClient, "client_credentials needs a confidential client")
	}
	scope, ok := s.grantScopes(f.Get("scope"))
	if !ok {
		return nil, grantError(CodeInvalidScope, "unsupported scope")
	}
	resource := s.issuer
	if res := f.Get("resource"); res != "" {
		resource = strings.TrimSuffix(res, "/")
		if !s.acceptsResource(resource) {
			return nil, grantError(CodeInvalidTarget, "resource is not served by this gateway")
		}
	}
	return s.issueTokens(ctx, client.ID, "client:"+client.ID, scope, resource, randomToken(""), false)
}

func (s *Server) issueTokens(ctx context.Context, clientID, subject, scope, resource, family string, withRefresh bool) (*tokenResponse, error) {
	s.maybeSweep(ctx)
	now := s.now()
	at := randomToken(AccessTokenPrefix)
	if err := s.st.CreateOAuthToken(ctx, &store.OAuthToken{TokenHash: hashSecret(at), Kind: store.TokenAccess,
		FamilyID: family, ClientID: clientID, Subject: subject, Scope: scope, Resource: resource,
		ExpiresAt: now.Add(s.cfg.AccessTokenTTL)}); err != nil {
		return nil, fmt.Errorf("save access token: %w", err)
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTokenTTL.Seconds()), Scope: scope}
	if withRefresh {
		rt := randomToken(RefreshTokenPrefix)
		if err := s.st.CreateOAuthToken(ctx, &store.OAuthToken{TokenHash: hashSecret(rt), Kind: store.TokenRefresh,
			FamilyID: family, ClientID: clientID, Subject: subject, Scope: scope, Resource: resource,
			ExpiresAt: now.Add(s.cfg.RefreshTokenTTL)}); err != nil {
			return nil, fmt.Errorf("save refresh token: %w", err)
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// s256 is the PKCE S256 transform.
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// validVerifier checks RFC 7636 §4.1: 43-128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}
