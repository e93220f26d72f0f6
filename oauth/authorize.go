package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// authRequest is a validated authorization request, kept server-side between the login
// page and its submission.
type authRequest struct {
	ClientID      string `json:"client_id"`
	ClientName    string `json:"client_name"`
	RedirectURI   string `json:"redirect_uri"`
	State         string `json:"state"`
	Scope         string `json:"scope"`
	Resource      string `json:"resource"`
	CodeChallenge string `json:"code_challenge"`
	CSRFHash      string `json:"csrf_hash"` // hash of the CSRF cookie the page was served with
}

// redirectError is an error returned to the client through its redirect URI.
type redirectError struct {
	code, desc string
}

func (s *Server) csrfCookieName() string {
	if s.secure {
		return "__Host-toolgate_csrf"
	}
	return "toolgate_csrf"
}

// pageHeaders are set on every HTML page: no framing, no caching, no referrer.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// handleAuthorize shows the login and consent page (GET) and handles its submission (POST).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.authorizeStart(w, r)
	case http.MethodPost:
		if r.FormValue("request_id") == "" {
			s.authorizeStart(w, r) // an authorization request sent as a form POST
			return
		}
		s.authorizeSubmit(w, r)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// authorizeStart validates the request. Problems with the client or redirect URI are shown
// to the user (never redirected); the rest go back to the client.
func (s *Server) authorizeStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.Form
	if q == nil {
		r.ParseForm()
		q = r.Form
	}
	client, err := s.lookupClient(ctx, q.Get("client_id"))
	if err != nil {
		s.errorPage(w, err, "Unknown client", "This application is not registered with the gateway.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if redirectURI == "" && len(client.RedirectURIs) == 1 {
		redirectURI = client.RedirectURIs[0]
	}
	if redirectURI == "" || !redirectMatches(client.RedirectURIs, redirectURI) {
		s.errorPage(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "redirect_uri mismatch"},
			"Invalid redirect", "The redirect URI does not match the ones this application registered.")
		return
	}
	req := &authRequest{ClientID: client.ID, ClientName: client.Name, RedirectURI: redirectURI, State: q.Get("state")}
	fail := func(code, desc string) {
		s.redirect(w, r, req, "", &redirectError{code, desc})
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if len(client.GrantTypes) > 0 && !slices.Contains(client.GrantTypes, GrantAuthorizationCode) {
		fail(CodeUnauthorizedClient, "client may not use the authorization code grant")
		return
	}
	req.CodeChallenge = q.Get("code_challenge")
	if req.CodeChallenge == "" {
		fail(CodeInvalidRequest, "code_challenge is required (PKCE)")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail(CodeInvalidRequest, "code_challenge_method must be S256")
		return
	}
	if len(req.CodeChallenge) != 43 {
		fail(CodeInvalidRequest, "code_challenge is not a S256 challenge")
		return
	}
	resources := q["resource"]
	switch len(resources) {
	case 0:
		req.Resource = s.issuer
	case 1:
		req.Resource = strings.TrimSuffix(resources[0], "/")
		if !s.acceptsResource(req.Resource) {
			fail(CodeInvalidTarget, "resource is not served by this gateway")
			return
		}
	default:
		fail(CodeInvalidTarget, "only one resource may be requested")
		return
	}
	scope, ok := s.grantScopes(q.Get("scope"))
	if !ok {
		fail(CodeInvalidScope, "unsupported scope")
		return
	}
	req.Scope = scope
	if s.cfg.AutoApprove != nil {
		if subject, ok := s.cfg.AutoApprove(r); ok {
			s.issueCode(w, r, req, subject)
			return
		}
	}
	s.loginPage(w, r, req, "")
}

// loginPage stores req under a fresh request ID bound to a fresh CSRF cookie and renders
// the login and consent form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, req *authRequest, problem string) {
	csrf := randomToken("")
	req.CSRFHash = hashSecret(csrf)
	data, _ := json.Marshal(req)
	st := &store.OAuthState{ID: randomToken(""), Kind: stateAuthorize, Data: data, ExpiresAt: s.now().Add(s.cfg.RequestTTL)}
	if err := s.st.CreateOAuthState(r.Context(), st); err != nil {
		s.errorPage(w, fmt.Errorf("save authorization request: %w", err), "Error", "Please try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: s.csrfCookieName(), Value: csrf, Path: "/", MaxAge: int(s.cfg.RequestTTL.Seconds()),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	pageHeaders(w)
	status := http.StatusOK
	if problem != "" {
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
	redirectHost := req.RedirectURI
	if u, err := url.Parse(req.RedirectURI); err == nil && u.Host != "" {
		redirectHost = u.Scheme + "://" + u.Host
	}
	loginTmpl.Execute(w, map[string]any{
		"Action": s.endpoint("authorize"), "RequestID": st.ID, "CSRF": csrf, "Client": req.ClientName,
		"ClientID": req.ClientID, "Redirect": redirectHost, "Resource": req.Resource, "Scope": req.Scope, "Problem": problem,
		"IdP": s.idp != nil,
	})
}

// authorizeSubmit handles the login form: CSRF check, single-use request, key check.
func (s *Server) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cookie, err := r.Cookie(s.csrfCookieName())
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || !equalSecret(cookie.Value, form) {
		s.errorPage(w, &Error{Status: http.StatusForbidden, Code: CodeAccessDenied, Description: "CSRF check failed"},
			"Request refused", "The form was not submitted from the gateway's own login page. Start the sign-in again from your application.")
		return
	}
	st, err := s.st.ConsumeOAuthState(ctx, r.PostFormValue("request_id"), stateAuthorize)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.errorPage(w, err, "Error", "Please try again.")
			return
		}
		s.errorPage(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "unknown or used authorization request"},
			"Sign-in expired", "This sign-in was already used or has expired. Start again from your application.")
		return
	}
	var req authRequest
	if err := json.Unmarshal(st.Data, &req); err != nil || !equalSecret(req.CSRFHash, hashSecret(cookie.Value)) {
		s.errorPage(w, &Error{Status: http.StatusForbidden, Code: CodeAccessDenied, Description: "CSRF check failed"},
			"Request refused", "Start the sign-in again from your application.")
		return
	}
	if !s.now().Before(st.ExpiresAt) {
		s.errorPage(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "authorization request expired"},
			"Sign-in expired", "This sign-in has expired. Start again from your application.")
		return
	}
	if r.PostFormValue("action") != "approve" {
		s.redirect(w, r, &req, "", &redirectError{CodeAccessDenied, "the user denied the request"})
		return
	}
	if s.idp != nil {
		s.toIdP(w, r, &req)
		return
	}
	subject, err := s.cfg.Keys.VerifyKey(ctx, strings.TrimSpace(r.PostFormValue("key")))
	if err != nil {
		if !errors.Is(err, ErrInvalidKey) {
			s.log.ErrorContext(ctx, "oauth: verify key", "err", err)
		}
		s.loginPage(w, r, &req, "That key was not accepted.")
		return
	}
	s.issueCode(w, r, &req, subject)
}

// issueCode stores a fresh authorization code for req and redirects to the client.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authRequest, subject string) {
	code := randomToken("")
	c := &store.OAuthCode{CodeHash: hashSecret(code), ClientID: req.ClientID, RedirectURI: req.RedirectURI,
		Subject: subject, Scope: req.Scope, Resource: req.Resource, CodeChallenge: req.CodeChallenge,
		ExpiresAt: s.now().Add(s.cfg.CodeTTL)}
	if err := s.st.CreateOAuthCode(r.Context(), c); err != nil {
		s.log.ErrorContext(r.Context(), "oauth: save code", "err", err)
		s.redirect(w, r, req, "", &redirectError{CodeServerError, "internal error"})
		return
	}
	s.redirect(w, r, req, code, nil)
}

// redirect sends the authorization response to the client's redirect URI, with iss
// (RFC 9207) and state.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, req *authRequest, code string, rerr *redirectError) {
	u, err := url.Parse(req.RedirectURI)
	if err != nil {
		s.errorPage(w, err, "Error", "Invalid redirect URI.")
		return
	}
	q := u.Query()
	if rerr != nil {
		q.Set("error", rerr.code)
		q.Set("error_description", rerr.desc)
	} else {
		q.Set("code", code)
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// 303 turns the form POST into a GET at the client.
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// errorPage shows an error to the user (the client is not told).
func (s *Server) errorPage(w http.ResponseWriter, err error, title, msg string) {
	status, oe := ErrorStatus(err)
	if status >= 500 {
		s.log.Error("oauth: authorize", "err", err)
	}
	pageHeaders(w)
	w.WriteHeader(status)
	errorTmpl.Execute(w, map[string]string{"Title": title, "Message": msg, "Code": oe.Code})
}

// writeOAuthError writes an RFC 6749 §5.2 JSON error.
func (s *Server) writeOAuthError(w http.ResponseWriter, err error) {
	status, oe := ErrorStatus(err)
	if status >= 500 {
		s.log.Error("oauth: request failed", "err", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if status == http.StatusUnauthorized && oe.Code == CodeInvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="toolgate"`)
	}
	writeJSON(w, status, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to toolgate</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
code{background:#f2f2f2;padding:0 .2rem;word-break:break-all}.problem{color:#b00020}
input[type=password]{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}
button{padding:.5rem 1rem;margin-right:.5rem}</style></head>
<body><h1>Sign in to toolgate</h1>
<p><strong>{{if .Client}}{{.Client}}{{else}}An application{{end}}</strong> (<code>{{.ClientID}}</code>) asks for access to
<code>{{.Resource}}</code> with scope <code>{{.Scope}}</code>.</p>
<p>After you approve, you will be sent to <code>{{.Redirect}}</code>. Approve only if you started this sign-in.</p>
{{if .Problem}}<p class="problem" role="alert">{{.Problem}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="request_id" value="{{.RequestID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .IdP}}<p>You will sign in at your identity provider next.</p>{{else}}<label for="key">Your toolgate key</label>
<input type="password" id="key" name="key" autocomplete="off" autofocus>{{end}}
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form></body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto"><h1>{{.Title}}</h1>
<p>{{.Message}}</p><p><small>{{.Code}}</small></p></body></html>
`))
