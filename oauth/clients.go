package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
)

// maxRegistrationBytes bounds a registration request body.
const maxRegistrationBytes = 64 << 10

// clientRegistration is an RFC 7591 client metadata request and response.
type clientRegistration struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at,omitempty"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// registerError is an RFC 7591 §3.2.2 error.
func registerError(code, desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// handleRegister implements RFC 7591 dynamic client registration.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	corsHeaders(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	resp, err := s.register(r.Context(), http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		s.writeOAuthError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) register(ctx context.Context, body io.Reader) (*clientRegistration, error) {
	var req clientRegistration
	dec := json.NewDecoder(body)
	if err := dec.Decode(&req); err != nil {
		return nil, registerError(CodeInvalidClientMeta, "request body is not valid client metadata JSON")
	}
	if req.TokenEndpointAuthMethod == "" {
		req.TokenEndpointAuthMethod = "client_secret_basic" // RFC 7591 §2
	}
	switch req.TokenEndpointAuthMethod {
	case "none", "client_secret_basic", "client_secret_post":
	default:
		return nil, registerError(CodeInvalidClientMeta, "unsupported token_endpoint_auth_method")
	}
	if len(req.GrantTypes) == 0 {
		req.GrantTypes = []string{GrantAuthorizationCode}
	}
	for _, g := range req.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken:
		case GrantClientCredentials:
			if req.TokenEndpointAuthMethod == "none" {
				return nil, registerError(CodeInvalidClientMeta, "client_credentials needs a confidential client")
			}
		default:
			return nil, registerError(CodeInvalidClientMeta, fmt.Sprintf("unsupported grant type %q", g))
		}
	}
	if len(req.ResponseTypes) == 0 {
		req.ResponseTypes = []string{"code"}
	}
	if !slices.Equal(req.ResponseTypes, []string{"code"}) {
		return nil, registerError(CodeInvalidClientMeta, "only the code response type is supported")
	}
	if slices.Contains(req.GrantTypes, GrantAuthorizationCode) && len(req.RedirectURIs) == 0 {
		return nil, registerError(CodeInvalidRedirectURI, "redirect_uris is required")
	}
	if len(req.RedirectURIs) > 20 {
		return nil, registerError(CodeInvalidRedirectURI, "too many redirect_uris")
	}
	for _, u := range req.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, registerError(CodeInvalidRedirectURI, err.Error())
		}
	}
	if req.Scope != "" {
		if _, ok := s.grantScopes(req.Scope); !ok {
			return nil, registerError(CodeInvalidClientMeta, "unsupported scope")
		}
	}
	if len(req.ClientName) > 200 {
		req.ClientName = req.ClientName[:200]
	}
	c := &store.OAuthClient{
		ID:                      randomToken(clientIDPrefix),
		Name:                    req.ClientName,
		RedirectURIs:            req.RedirectURIs,
		GrantTypes:              req.GrantTypes,
		ResponseTypes:           req.ResponseTypes,
		TokenEndpointAuthMethod: req.TokenEndpointAuthMethod,
		ApplicationType:         req.ApplicationType,
		Scope:                   req.Scope,
		ClientURI:               req.ClientURI,
	}
	secret := ""
	if c.TokenEndpointAuthMethod != "none" {
		secret = randomToken(clientSecretPrefix)
		c.SecretHash = hashSecret(secret)
	}
	if err := s.st.CreateOAuthClient(ctx, c); err != nil {
		return nil, fmt.Errorf("register client: %w", err)
	}
	resp := req
	resp.ClientID = c.ID
	resp.ClientSecret = secret
	resp.ClientIDIssuedAt = c.CreatedAt.Unix()
	if secret != "" {
		zero := int64(0)
		resp.ClientSecretExpiresAt = &zero
	}
	return &resp, nil
}

// checkRedirectURI accepts https URIs, http URIs on a loopback host (RFC 8252 §7.3) and
// private-use schemes of native apps (RFC 8252 §7.1), never with a fragment.
func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("redirect URI %q is not an absolute URI", s)
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("redirect URI %q has a fragment", s)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", s)
		}
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q: http is allowed only for loopback hosts", s)
		}
	case "javascript", "data", "file", "vbscript", "about", "blob", "ws", "wss":
		return fmt.Errorf("redirect URI %q: scheme not allowed", s)
	}
	return nil
}

// redirectMatches reports whether requested equals one of registered exactly, or is a
// loopback http URI differing from a registered one only in its port (RFC 8252 §7.3).
func redirectMatches(registered []string, requested string) bool {
	if slices.Contains(registered, requested) {
		return true
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || !isLoopbackHost(ru.Hostname()) {
		return false
	}
	for _, reg := range registered {
		gu, err := url.Parse(reg)
		if err != nil || gu.Scheme != "http" || !isLoopbackHost(gu.Hostname()) {
			continue
		}
		if strings.EqualFold(gu.Hostname(), ru.Hostname()) && gu.EscapedPath() == ru.EscapedPath() &&
			gu.RawQuery == ru.RawQuery && gu.User == nil && ru.User == nil {
			return true
		}
	}
	return false
}

// isMetadataDocumentID reports whether id names a Client ID Metadata Document: an https
// URL with a path.
func isMetadataDocumentID(id string) bool {
	u, err := url.Parse(id)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.Path != "" && u.Path != "/" && u.Fragment == "" && u.User == nil
}

// isLoopbackDocumentID is isMetadataDocumentID for http loopback URLs, accepted only when
// the fetch client allows loopback (tests).
func isLoopbackDocumentID(id string) bool {
	u, err := url.Parse(id)
	return err == nil && u.Scheme == "http" && isLoopbackHost(u.Hostname()) && u.Path != "" && u.Path != "/"
}

// lookupClient finds a registered client, or fetches a Client ID Metadata Document.
func (s *Server) lookupClient(ctx context.Context, id string) (*store.OAuthClient, error) {
	if id == "" {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "client_id is required"}
	}
	if s.cfg.ClientMetadataDocuments && (isMetadataDocumentID(id) || isLoopbackDocumentID(id)) {
		return s.metadataDocumentClient(ctx, id)
	}
	c, err := s.st.OAuthClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: "unknown client", Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("look up client: %w", err)
	}
	return c, nil
}

// metadataDocumentClient fetches (through the SSRF-safe client) and caches a Client ID
// Metadata Document, whose client_id must equal its URL.
func (s *Server) metadataDocumentClient(ctx context.Context, id string) (*store.OAuthClient, error) {
	if c, ok := s.cimd.Get(id); ok {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var doc clientRegistration
	if err := fetchJSON(ctx, s.client, id, &doc); err != nil {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient,
			Description: "client metadata document could not be fetched", Err: err}
	}
	bad := func(why string) error {
		return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: "client metadata document: " + why}
	}
	if doc.ClientID != id {
		return nil, bad("client_id does not match its URL")
	}
	if len(doc.RedirectURIs) == 0 {
		return nil, bad("redirect_uris is required")
	}
	for _, u := range doc.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, bad(err.Error())
		}
	}
	if m := doc.TokenEndpointAuthMethod; m != "" && m != "none" {
		return nil, bad("only public clients (token_endpoint_auth_method none) are supported")
	}
	c := &store.OAuthClient{ID: id, Name: doc.ClientName, RedirectURIs: doc.RedirectURIs,
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", ClientURI: doc.ClientURI, Scope: doc.Scope}
	s.cimd.Add(id, c)
	return c, nil
}
