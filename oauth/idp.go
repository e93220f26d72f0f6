package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/toolgate/toolgate/store"
)

const stateIdP = "idp"

// IdPCallbackPath is where a configured OIDC identity provider sends the browser back.
const IdPCallbackPath = "/oauth/idp/callback"

// IdPConfig delegates the login step of the authorization server to an OpenID Connect
// provider (authorization code flow with PKCE and nonce, via x/oauth2). The user still
// approves the MCP client on the gateway's own consent page first.
type IdPConfig struct {
	Issuer           string   `yaml:"issuer"` // the provider's iss; required
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret"`
	AuthorizationURL string   `yaml:"authorization_url"`
	TokenURL         string   `yaml:"token_url"`
	JWKSURL          string   `yaml:"jwks_url"`
	Scopes           []string `yaml:"scopes"` // if nil, openid email profile
	// Algorithms allowed on ID tokens. If nil, DefaultAlgorithms.
	Algorithms []string `yaml:"algorithms"`
	// Claims map the ID token onto Principal fields (user_id_jwt_field defaults to sub).
	ClaimMapping `yaml:",inline"`
	// Subject maps the provider's verified user onto the subject tokens are issued to
	// (e.g. "user:<id>" of an existing toolgate user), or refuses them with an error.
	// Required.
	Subject func(ctx context.Context, p *Principal) (string, error) `yaml:"-"`
}

type idpFlow struct {
	Request  authRequest `json:"request"`
	Verifier string      `json:"verifier"`
	Nonce    string      `json:"nonce"`
}

// idp is a configured provider, ready to use.
type idp struct {
	cfg       IdPConfig
	oauth     *oauth2.Config
	validator *JWTValidator
}

func newIdP(cfg IdPConfig, redirect string, client *http.Client, now func() time.Time) (*idp, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.AuthorizationURL == "" || cfg.TokenURL == "" || cfg.JWKSURL == "" || cfg.Subject == nil {
		return nil, errors.New("oauth: IdPConfig needs issuer, client_id, authorization_url, token_url, jwks_url and Subject")
	}
	scopes := cfg.Scopes
	if scopes == nil {
		scopes = []string{"openid", "email", "profile"}
	}
	v, err := NewJWTValidator(JWTConfig{
		Issuers:    []IssuerConfig{{Issuer: cfg.Issuer, JWKSURL: cfg.JWKSURL, Audience: cfg.ClientID, Algorithms: cfg.Algorithms, ClaimMapping: cfg.ClaimMapping}},
		HTTPClient: client,
		Now:        now,
	})
	if err != nil {
		return nil, fmt.Errorf("oauth: idp: %w", err)
	}
	return &idp{cfg: cfg, validator: v, oauth: &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Scopes: scopes, RedirectURL: redirect, Endpoint: oauth2.Endpoint{AuthURL: cfg.AuthorizationURL, TokenURL: cfg.TokenURL}}}, nil
}

// toIdP sends the browser to the provider for req, after the user approved the client on
// the consent page.
func (s *Server) toIdP(w http.ResponseWriter, r *http.Request, req *authRequest) {
	flow := idpFlow{Request: *req, Verifier: oauth2.GenerateVerifier(), Nonce: randomToken("")}
	data, _ := json.Marshal(flow)
	id := randomToken("")
	if err := s.st.CreateOAuthState(r.Context(), &store.OAuthState{ID: id, Kind: stateIdP, Data: data,
		ExpiresAt: s.now().Add(s.cfg.RequestTTL)}); err != nil {
		s.errorPage(w, fmt.Errorf("save idp state: %w", err), "Error", "Please try again.")
		return
	}
	u := s.idp.oauth.AuthCodeURL(id, oauth2.S256ChallengeOption(flow.Verifier), oauth2.SetAuthURLParam("nonce", flow.Nonce))
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// handleIdPCallback finishes the provider's leg: single-use state, code exchange with the
// PKCE verifier, ID token verified (issuer, audience, signature, expiry, nonce), the user
// mapped to a subject, then the authorization code for the MCP client.
func (s *Server) handleIdPCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	st, err := s.st.ConsumeOAuthState(ctx, q.Get("state"), stateIdP)
	if err != nil {
		s.errorPage(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "unknown or used sign-in"},
			"Sign-in expired", "This sign-in was already used or has expired. Start again from your application.")
		return
	}
	var flow idpFlow
	if err := json.Unmarshal(st.Data, &flow); err != nil || !s.now().Before(st.ExpiresAt) {
		s.errorPage(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "sign-in expired"},
			"Sign-in expired", "Start again from your application.")
		return
	}
	if q.Get("error") != "" {
		s.redirect(w, r, &flow.Request, "", &redirectError{CodeAccessDenied, "the identity provider refused the sign-in"})
		return
	}
	tok, err := s.idp.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, s.client), q.Get("code"), oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		s.log.WarnContext(ctx, "oauth: idp code exchange", "err", err)
		s.redirect(w, r, &flow.Request, "", &redirectError{CodeAccessDenied, "sign-in at the identity provider failed"})
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	p, err := s.idp.validator.Validate(ctx, raw)
	if err != nil || p.Claims["nonce"] != flow.Nonce {
		s.log.WarnContext(ctx, "oauth: idp id_token refused", "err", err)
		s.redirect(w, r, &flow.Request, "", &redirectError{CodeAccessDenied, "the identity provider's ID token was not valid"})
		return
	}
	subject, err := s.idp.cfg.Subject(ctx, p)
	if err != nil {
		s.log.InfoContext(ctx, "oauth: idp user refused", "sub", p.Subject, "err", err)
		s.redirect(w, r, &flow.Request, "", &redirectError{CodeAccessDenied, "this user may not use the gateway"})
		return
	}
	s.issueCode(w, r, &flow.Request, subject)
}

// idpPaths are the extra paths routed to the server when a provider is configured.
func (s *Server) idpPaths() []string {
	if s.idp == nil {
		return nil
	}
	ps := []string{IdPCallbackPath}
	if s.res.root != "" {
		ps = append(ps, s.res.root+IdPCallbackPath)
	}
	return ps
}
