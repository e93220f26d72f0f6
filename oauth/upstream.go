package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/toolgate/toolgate/store"
)

const stateUpstream = "upstream"

// Sealer seals secrets at rest; internal/seal.Box satisfies it.
type Sealer interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// UpstreamStore is the persistence upstream OAuth needs; store.OAuthStore satisfies it.
type UpstreamStore interface {
	PutUpstreamToken(ctx context.Context, t *store.UpstreamToken) error
	UpstreamToken(ctx context.Context, serverID, subject string) (*store.UpstreamToken, error)
	DeleteUpstreamToken(ctx context.Context, serverID, subject string) error
	CreateOAuthState(ctx context.Context, s *store.OAuthState) error
	ConsumeOAuthState(ctx context.Context, id, kind string) (*store.OAuthState, error)
}

// UpstreamServer is an upstream MCP server with auth_type oauth2, as the gateway's OAuth
// client sees it.
type UpstreamServer struct {
	ID               string // the server's stable ID; tokens are stored under it
	Name             string // shown on the consent page
	ClientID         string
	ClientSecret     string // empty for a public client
	AuthorizationURL string
	TokenURL         string
	Scopes           []string
	GrantType        string // GrantAuthorizationCode (default, per user) or GrantClientCredentials
	Resource         string // RFC 8707 resource sent to the upstream's AS (its MCP URL); optional
}

func (s UpstreamServer) config(redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, Scopes: s.Scopes, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: s.AuthorizationURL, TokenURL: s.TokenURL}}
}

// AuthRequiredError means the user has not connected their account at the upstream yet
// (or the stored token can no longer be refreshed). The gateway turns it into a message
// carrying ConnectURL, which the user opens in a browser.
type AuthRequiredError struct {
	Server     string
	ConnectURL string
	Err        error
}

func (e *AuthRequiredError) Error() string {
	return fmt.Sprintf("upstream %s needs authorization: open %s", e.Server, e.ConnectURL)
}

func (e *AuthRequiredError) Unwrap() error { return e.Err }

// UpstreamConfig configures an Upstream.
type UpstreamConfig struct {
	// Store keeps sealed per-user tokens and redirect states. Required.
	Store UpstreamStore
	// Sealer seals tokens at rest. Required.
	Sealer Sealer
	// Keys verifies the user on the connect page (so nobody can attach their upstream
	// account to another user's subject, or the reverse). Required for the per-user flow.
	Keys KeyVerifier
	// PublicURL is the gateway's external base URL; the connect and callback endpoints are
	// PublicURL + "/oauth/upstream/connect" and "/oauth/upstream/callback". Required.
	PublicURL string
	// Servers resolves a server ID to its current OAuth settings. Required.
	Servers func(ctx context.Context, serverID string) (UpstreamServer, error)
	// HTTPClient talks to the upstream token endpoints. If nil, NewHTTPClient(FetchConfig{}).
	HTTPClient *http.Client
	// StateTTL bounds a connect flow. If zero, 10 minutes.
	StateTTL time.Duration
	// Logger receives errors. If nil, logs are discarded.
	Logger *slog.Logger
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Upstream is the gateway as an OAuth client of upstream MCP servers: per-user
// authorization-code tokens (sealed in the store, refreshed with x/oauth2) and
// client-credentials tokens (cached in memory until they expire). It is safe for
// concurrent use.
type Upstream struct {
	cfg    UpstreamConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu sync.Mutex
	cc map[string]*ccEntry // client_credentials tokens by server ID
}

type ccEntry struct {
	mu  sync.Mutex // one fetch at a time per server
	tok *oauth2.Token
	key string // settings the token was fetched with; a change invalidates it
}

// NewUpstream validates cfg and returns an Upstream. It does no I/O.
func NewUpstream(cfg UpstreamConfig) (*Upstream, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Servers == nil {
		return nil, errors.New("oauth: UpstreamConfig needs Store, Sealer and Servers")
	}
	if _, err := parsePublicURL(cfg.PublicURL); err != nil {
		return nil, err
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = 10 * time.Minute
	}
	u := &Upstream{cfg: cfg, client: cfg.HTTPClient, log: cfg.Logger, now: cfg.Now, cc: map[string]*ccEntry{}}
	if u.client == nil {
		u.client = NewHTTPClient(FetchConfig{})
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if u.now == nil {
		u.now = time.Now
	}
	return u, nil
}

// CallbackURL is the redirect URI to register at upstream authorization servers.
func (u *Upstream) CallbackURL() string { return u.cfg.PublicURL + "/oauth/upstream/callback" }

// ConnectPath and CallbackPath are the request paths the gateway routes to u.
const (
	ConnectPath  = "/oauth/upstream/connect"
	CallbackPath = "/oauth/upstream/callback"
)

func (u *Upstream) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, u.client)
}

// Headers returns the headers that authenticate subject at srv: Authorization with the
// user's (refreshed) upstream token, or with the server's client-credentials token. A
// user with no usable token gets an *AuthRequiredError with the URL to connect.
func (u *Upstream) Headers(ctx context.Context, srv UpstreamServer, subject string) (http.Header, error) {
	var tok *oauth2.Token
	var err error
	if srv.GrantType == GrantClientCredentials {
		tok, err = u.clientCredentials(ctx, srv)
	} else {
		tok, err = u.userToken(ctx, srv, subject)
	}
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok.AccessToken)
	return h, nil
}

func (u *Upstream) clientCredentials(ctx context.Context, srv UpstreamServer) (*oauth2.Token, error) {
	key := srv.ClientID + "\x00" + srv.TokenURL + "\x00" + strings.Join(srv.Scopes, " ") + "\x00" + srv.Resource
	u.mu.Lock()
	e := u.cc[srv.ID]
	if e == nil {
		e = &ccEntry{}
		u.cc[srv.ID] = e
	}
	u.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tok != nil && e.key == key && (e.tok.Expiry.IsZero() || u.now().Add(30*time.Second).Before(e.tok.Expiry)) {
		return e.tok, nil
	}
	cc := clientcredentials.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, Scopes: srv.Scopes}
	if srv.Resource != "" {
		cc.EndpointParams = url.Values{"resource": {srv.Resource}}
	}
	tok, err := cc.Token(u.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: client credentials: %w", srv.ID, err)
	}
	e.tok, e.key = tok, key
	return tok, nil
}

func (u *Upstream) userToken(ctx context.Context, srv UpstreamServer, subject string) (*oauth2.Token, error) {
	required := func(err error) error {
		return &AuthRequiredError{Server: srv.ID, ConnectURL: u.connectURL(srv.ID), Err: err}
	}
	st, err := u.cfg.Store.UpstreamToken(ctx, srv.ID, subject)
	if errors.Is(err, store.ErrNotFound) {
		return nil, required(err)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: load token: %w", srv.ID, err)
	}
	plain, err := u.cfg.Sealer.Open(st.Sealed)
	if err != nil {
		return nil, required(fmt.Errorf("open token: %w", err))
	}
	var tok oauth2.Token
	if err := json.Unmarshal(plain, &tok); err != nil {
		return nil, required(fmt.Errorf("decode token: %w", err))
	}
	if tok.Expiry.IsZero() || u.now().Add(30*time.Second).Before(tok.Expiry) {
		return &tok, nil
	}
	if tok.RefreshToken == "" {
		return nil, required(errors.New("token expired and has no refresh token"))
	}
	fresh, err := srv.config(u.CallbackURL()).TokenSource(u.ctx(ctx), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == CodeInvalidGrant {
			u.cfg.Store.DeleteUpstreamToken(ctx, srv.ID, subject)
			return nil, required(err)
		}
		return nil, fmt.Errorf("upstream %s: refresh: %w", srv.ID, err)
	}
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = tok.RefreshToken
	}
	if err := u.save(ctx, srv.ID, subject, fresh); err != nil {
		return nil, err
	}
	return fresh, nil
}

func (u *Upstream) save(ctx context.Context, serverID, subject string, tok *oauth2.Token) error {
	plain, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	sealed, err := u.cfg.Sealer.Seal(plain)
	if err != nil {
		return fmt.Errorf("seal upstream token: %w", err)
	}
	if err := u.cfg.Store.PutUpstreamToken(ctx, &store.UpstreamToken{ServerID: serverID, Subject: subject,
		Sealed: sealed, ExpiresAt: tok.Expiry}); err != nil {
		return fmt.Errorf("upstream %s: save token: %w", serverID, err)
	}
	return nil
}

// Disconnect forgets subject's token at the server.
func (u *Upstream) Disconnect(ctx context.Context, serverID, subject string) error {
	return u.cfg.Store.DeleteUpstreamToken(ctx, serverID, subject)
}

func (u *Upstream) connectURL(serverID string) string {
	return u.cfg.PublicURL + ConnectPath + "?" + url.Values{"server": {serverID}}.Encode()
}

// upstreamFlow is what a connect flow keeps between the redirect and the callback.
type upstreamFlow struct {
	ServerID string `json:"server_id"`
	Subject  string `json:"subject"`
	Verifier string `json:"verifier"`
}

// ServeHTTP serves the connect page (GET shows it, POST verifies the user's key and sends
// the browser to the upstream's authorization server with PKCE and a single-use state)
// and the callback (exchanges the code and stores the sealed token for that user).
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, ConnectPath):
		u.connect(w, r)
	case strings.HasSuffix(r.URL.Path, CallbackPath):
		u.callback(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (u *Upstream) page(w http.ResponseWriter, status int, title, msg string, form map[string]string) {
	pageHeaders(w)
	w.WriteHeader(status)
	upstreamTmpl.Execute(w, map[string]any{"Title": title, "Message": msg, "Form": form})
}

func (u *Upstream) csrfCookie() string {
	if strings.HasPrefix(u.cfg.PublicURL, "https://") {
		return "__Host-toolgate_upstream_csrf"
	}
	return "toolgate_upstream_csrf"
}

// form sets a fresh CSRF cookie and returns the connect form's fields.
func (u *Upstream) form(w http.ResponseWriter, serverID string) map[string]string {
	csrf := randomToken("")
	http.SetCookie(w, &http.Cookie{Name: u.csrfCookie(), Value: csrf, Path: "/", MaxAge: int(u.cfg.StateTTL.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(u.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode})
	return map[string]string{"server": serverID, "action": u.cfg.PublicURL + ConnectPath, "csrf": csrf}
}

func (u *Upstream) connect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	serverID := r.FormValue("server")
	srv, err := u.cfg.Servers(ctx, serverID)
	if err != nil || srv.GrantType == GrantClientCredentials || srv.AuthorizationURL == "" {
		u.page(w, http.StatusNotFound, "Unknown server", "There is no upstream server to connect by that name.", nil)
		return
	}
	name := srv.Name
	if name == "" {
		name = srv.ID
	}
	if r.Method != http.MethodPost {
		u.page(w, http.StatusOK, "Connect "+name, "Paste your toolgate key to connect your "+name+" account to it.", u.form(w, serverID))
		return
	}
	// Double-submit CSRF check: a cross-site form cannot know the cookie's value, so nobody
	// can make a victim's browser link the victim's upstream account to their key.
	c, err := r.Cookie(u.csrfCookie())
	if err != nil || r.PostFormValue("csrf") == "" || !equalSecret(c.Value, r.PostFormValue("csrf")) {
		u.page(w, http.StatusForbidden, "Request refused", "Open the connect page again and submit it from there.", nil)
		return
	}
	if u.cfg.Keys == nil {
		u.page(w, http.StatusForbidden, "Not available", "Per-user upstream authorization is not configured.", nil)
		return
	}
	subject, err := u.cfg.Keys.VerifyKey(ctx, strings.TrimSpace(r.PostFormValue("key")))
	if err != nil {
		u.page(w, http.StatusUnauthorized, "Connect "+name, "That key was not accepted.", u.form(w, serverID))
		return
	}
	flow := upstreamFlow{ServerID: srv.ID, Subject: subject, Verifier: oauth2.GenerateVerifier()}
	data, _ := json.Marshal(flow)
	state := randomToken("")
	if err := u.cfg.Store.CreateOAuthState(ctx, &store.OAuthState{ID: state, Kind: stateUpstream, Data: data,
		ExpiresAt: u.now().Add(u.cfg.StateTTL)}); err != nil {
		u.log.ErrorContext(ctx, "oauth: save upstream state", "err", err)
		u.page(w, http.StatusInternalServerError, "Error", "Please try again.", nil)
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(flow.Verifier)}
	if srv.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", srv.Resource))
	}
	http.Redirect(w, r, srv.config(u.CallbackURL()).AuthCodeURL(state, opts...), http.StatusSeeOther)
}

func (u *Upstream) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	st, err := u.cfg.Store.ConsumeOAuthState(ctx, q.Get("state"), stateUpstream)
	if err != nil {
		u.page(w, http.StatusBadRequest, "Connection expired", "This authorization was already used or has expired. Start again.", nil)
		return
	}
	var flow upstreamFlow
	if err := json.Unmarshal(st.Data, &flow); err != nil || !u.now().Before(st.ExpiresAt) {
		u.page(w, http.StatusBadRequest, "Connection expired", "This authorization has expired. Start again.", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		u.page(w, http.StatusBadRequest, "Not connected", "The upstream refused the authorization ("+e+").", nil)
		return
	}
	srv, err := u.cfg.Servers(ctx, flow.ServerID)
	if err != nil {
		u.page(w, http.StatusNotFound, "Unknown server", "The server was removed.", nil)
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(flow.Verifier)}
	if srv.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", srv.Resource))
	}
	tok, err := srv.config(u.CallbackURL()).Exchange(u.ctx(ctx), q.Get("code"), opts...)
	if err != nil {
		u.log.WarnContext(ctx, "oauth: upstream code exchange", "server", srv.ID, "err", err)
		u.page(w, http.StatusBadGateway, "Not connected", "The upstream did not issue a token.", nil)
		return
	}
	if err := u.save(ctx, srv.ID, flow.Subject, tok); err != nil {
		u.log.ErrorContext(ctx, "oauth: save upstream token", "err", err)
		u.page(w, http.StatusInternalServerError, "Error", "Please try again.", nil)
		return
	}
	u.page(w, http.StatusOK, "Connected", "Your account is connected. You can close this window and retry in your MCP client.", nil)
}

var upstreamTmpl = template.Must(template.New("upstream").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto"><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{with .Form}}<form method="post" action="{{.action}}"><input type="hidden" name="server" value="{{.server}}"><input type="hidden" name="csrf" value="{{.csrf}}">
<label for="key">Your toolgate key</label><br><input type="password" id="key" name="key" autocomplete="off" autofocus style="width:100%">
<p><button type="submit">Connect</button></p></form>{{end}}</body></html>
`))
