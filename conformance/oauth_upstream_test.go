package conformance

// Per-user upstream OAuth (auth_type oauth2, authorization code) with real clients: the
// official TypeScript SDK client talks to the gateway with a toolgate key, and headless
// chromium connects each user's upstream account through the gateway's connect page and
// the upstream's own login form.

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
)

// userOAuthUpstream is an upstream MCP server (streamable HTTP at /mcp, tool "whoami"
// answering the token's subject) behind its own OAuth authorization server. Its
// /authorize shows a login form ("Sign in to CRM", a user name field) to a browser that
// has no session there, and approves at once as the signed-in user afterwards. /mcp
// accepts only that server's access tokens and records every request's headers and which
// subject each token belonged to.
type userOAuthUpstream struct {
	URL   string // origin; the MCP endpoint is URL+"/mcp"
	as    *oauth.Server
	store *oauthtest.MemStore

	mu      sync.Mutex
	headers []http.Header
	subject map[string]string // access token -> subject
}

type upstreamUserKey struct{}

const upstreamSessionCookie = "crm_session"

var upstreamLoginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to CRM</title></head><body>
<h1>Sign in to CRM</h1><form method="post" action="/login"><input type="hidden" name="next" value="{{.}}">
<label for="user">User name</label> <input id="user" name="user"> <button type="submit">Sign in</button></form>
</body></html>
`))

func startUserOAuthUpstream(t *testing.T) *userOAuthUpstream {
	t.Helper()
	u := &userOAuthUpstream{store: oauthtest.NewMemStore(), subject: map[string]string{}}
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	u.URL = ts.URL
	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	u.as, err = oauth.NewServer(oauth.ServerConfig{Resource: res, Store: u.store, AccessTokenTTL: time.Hour,
		AutoApprove: func(r *http.Request) (string, bool) {
			c, err := r.Cookie(upstreamSessionCookie)
			if err != nil || c.Value == "" {
				return "", false
			}
			return c.Value, true
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range u.as.Paths() {
		mux.Handle(p, u.as)
	}
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(upstreamSessionCookie); err != nil || c.Value == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			upstreamLoginPage.Execute(w, r.URL.RequestURI())
			return
		}
		u.as.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		user, next := r.PostFormValue("user"), r.PostFormValue("next")
		if user == "" || !strings.HasPrefix(next, "/authorize?") {
			http.Error(w, "user and next (an /authorize URL) are required", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: upstreamSessionCookie, Value: user, Path: "/", HttpOnly: true})
		http.Redirect(w, r, next, http.StatusSeeOther)
	})

	ms := server.NewMCPServer("crm", "1", server.WithToolCapabilities(false))
	ms.AddTool(mcp.NewTool("whoami", mcp.WithDescription("The upstream account the caller's token belongs to.")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			sub, _ := ctx.Value(upstreamUserKey{}).(string)
			return mcp.NewToolResultText(sub), nil
		})
	streamable := server.NewStreamableHTTPServer(ms, server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
		return context.WithValue(ctx, upstreamUserKey{}, r.Context().Value(upstreamUserKey{}))
	}))
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g, err := u.as.Introspect(r.Context(), tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		u.mu.Lock()
		u.subject[tok] = g.Subject
		u.mu.Unlock()
		streamable.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamUserKey{}, g.Subject)))
	})
	return u
}

// addPublicClient registers the gateway at the upstream's authorization server.
func (u *userOAuthUpstream) addPublicClient(t *testing.T, id, redirectURI string) {
	t.Helper()
	if err := u.store.CreateOAuthClient(context.Background(), &store.OAuthClient{ID: id, RedirectURIs: []string{redirectURI},
		ResponseTypes: []string{"code"}, GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken},
		TokenEndpointAuthMethod: "none"}); err != nil {
		t.Fatal(err)
	}
}

// tokensOf returns the distinct access tokens the MCP endpoint accepted for subject.
func (u *userOAuthUpstream) tokensOf(subject string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for tok, sub := range u.subject {
		if sub == subject {
			out = append(out, tok)
		}
	}
	slices.Sort(out)
	return out
}

// upstreamMCPRun is oauth_upstream.mjs's report in mcp mode.
type upstreamMCPRun struct {
	OK              bool           `json:"ok"`
	ProtocolVersion string         `json:"protocolVersion"`
	Tools           []string       `json:"tools"`
	Meta            map[string]any `json:"meta"`
	Call            *struct {
		IsError bool   `json:"isError"`
		Text    string `json:"text"`
	} `json:"call"`
	CallError *struct {
		Code           int    `json:"code"`
		Message        string `json:"message"`
		URLElicitation bool   `json:"urlElicitation"`
		Data           struct {
			Elicitations []struct {
				Mode string `json:"mode"`
				URL  string `json:"url"`
			} `json:"elicitations"`
		} `json:"data"`
	} `json:"callError"`
	Error string `json:"error"`
}

// upstreamBrowserRun is oauth_upstream.mjs's report in browser mode.
type upstreamBrowserRun struct {
	OK    bool `json:"ok"`
	Pages []struct {
		URL   string `json:"url"`
		Title string `json:"title"`
	} `json:"pages"`
	Error string `json:"error"`
}

// runUpstreamScript runs conformance/oauth_upstream.mjs and decodes its last stdout line into out.
func runUpstreamScript(t *testing.T, n nodeEnv, out any, args ...string) {
	t.Helper()
	argv := append([]string{n.node, filepath.Join(n.dir, "oauth_upstream.mjs")}, args...)
	stdout, stderr, err := runCmd(context.Background(), n.dir, n.env(), 90*time.Second, argv...)
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if jerr := json.Unmarshal([]byte(line), out); jerr != nil {
		t.Fatalf("oauth_upstream.mjs %s: %v (exit %v)\nstdout: %s\nstderr: %s", args[0], jerr, err, stdout, stderr)
	}
	if err != nil {
		t.Logf("oauth_upstream.mjs %s exited with %v; stderr: %s", args[0], err, stderr)
	}
}

// TestOAuthUpstreamPerUserTypeScriptSDK: an upstream behind its own authorization server is
// registered with auth_type oauth2 (authorization code). A user of the TypeScript SDK client
// (toolgate key in Authorization) who has not connected sees the server left out of
// tools/list with the connect URL in _meta, and a call to its tool gets the -32042 URL
// elicitation carrying that URL. Headless chromium opens the URL, pastes the key on the
// gateway's page and signs in at the upstream; then the same client lists and calls the
// upstream's tool, which sees that user's own upstream token. A second user gets theirs, and
// the upstream never sees a toolgate key.
func TestOAuthUpstreamPerUserTypeScriptSDK(t *testing.T) {
	n := requireNode(t)
	requireChromium(t)
	dir := t.TempDir()
	up := startUserOAuthUpstream(t)
	g := startOAuthGateway(t, dir)
	up.addPublicClient(t, "toolgate", g.base+oauth.CallbackPath)
	g.api(t, http.MethodPost, "/v1/mcp/server", map[string]any{"server_name": "crm", "url": up.URL + "/mcp",
		"transport": "http", "auth_type": "oauth2", "oauth2_flow": "authorization_code",
		"authorization_url": up.URL + "/authorize", "token_url": up.URL + "/token",
		"credentials": map[string]any{"client_id": "toolgate", "scopes": []string{"mcp"}}})
	keys := map[string]string{"alice": g.newKey(t, "alice", "crm"), "bob": g.newKey(t, "bob", "crm")}

	mcpRun := func(t *testing.T, user string) upstreamMCPRun {
		t.Helper()
		var run upstreamMCPRun
		runUpstreamScript(t, n, &run, "mcp", "--url", g.base+"/mcp", "--key", keys[user], "--tool", "crm-whoami")
		if !run.OK {
			t.Fatalf("%s's TypeScript SDK client failed: %s", user, run.Error)
		}
		return run
	}
	var connectURL string
	for _, user := range []string{"alice", "bob"} {
		t.Run(user, func(t *testing.T) {
			// Not connected yet: the server is left out, and _meta says where to go.
			before := mcpRun(t, user)
			if slices.Contains(before.Tools, "crm-whoami") {
				t.Errorf("%s's tools before connecting: %v, want crm left out", user, before.Tools)
			}
			required, _ := before.Meta["toolgate/authorization_required"].(map[string]any)
			got, _ := required["crm"].(string)
			if !strings.HasPrefix(got, g.base+oauth.ConnectPath+"?server=") {
				t.Fatalf("%s's tools/list _meta = %v, want toolgate/authorization_required naming crm's connect URL", user, before.Meta)
			}
			if connectURL != "" && got != connectURL {
				t.Errorf("%s's connect URL %s differs from the first user's %s", user, got, connectURL)
			}
			connectURL = got
			// A call to its tool is a URL elicitation (-32042) on this 2025-11-25 session.
			ce := before.CallError
			if before.ProtocolVersion != "2025-11-25" {
				t.Errorf("negotiated protocol %q, want 2025-11-25", before.ProtocolVersion)
			}
			if ce == nil || ce.Code != -32042 || !ce.URLElicitation || len(ce.Data.Elicitations) != 1 ||
				ce.Data.Elicitations[0].Mode != "url" || ce.Data.Elicitations[0].URL != connectURL {
				t.Errorf("%s calls crm-whoami before connecting: error %+v (result %+v), want -32042 with a url elicitation of %s",
					user, ce, before.Call, connectURL)
			}

			// The browser: the gateway's key page, then the upstream's own login.
			var b upstreamBrowserRun
			runUpstreamScript(t, n, &b, "browser", "--url", connectURL, "--key", keys[user], "--user", user)
			if !b.OK {
				t.Fatalf("%s's browser: %s; pages %+v", user, b.Error, b.Pages)
			}
			var titles []string
			for _, p := range b.Pages {
				titles = append(titles, p.Title)
			}
			if want := []string{"Connect crm", "Sign in to CRM", "Connected"}; !slices.Equal(titles, want) {
				t.Errorf("%s's browser saw pages %q, want %q", user, titles, want)
			}

			// Connected: the same client now lists and calls the upstream's tool as that user.
			after := mcpRun(t, user)
			if !slices.Contains(after.Tools, "crm-whoami") {
				t.Errorf("%s's tools after connecting: %v, want crm-whoami", user, after.Tools)
			}
			if _, still := after.Meta["toolgate/authorization_required"]; still {
				t.Errorf("%s's tools/list still asks for authorization: %v", user, after.Meta)
			}
			if after.CallError != nil || after.Call == nil || after.Call.IsError || after.Call.Text != user {
				t.Errorf("%s calls crm-whoami: result %+v, error %+v; want the upstream to answer %q", user, after.Call, after.CallError, user)
			}
			if toks := up.tokensOf(user); len(toks) == 0 {
				t.Errorf("the upstream never accepted a token of %s's", user)
			}
		})
	}

	// After bob connected, alice is still alice upstream (lists and tokens are per user).
	if again := mcpRun(t, "alice"); again.Call == nil || again.Call.Text != "alice" {
		t.Errorf("alice calls crm-whoami after bob connected: result %+v, error %+v; want %q", again.Call, again.CallError, "alice")
	}
	// Each user's own token: none shared.
	alice, bob := up.tokensOf("alice"), up.tokensOf("bob")
	for _, tok := range alice {
		if slices.Contains(bob, tok) {
			t.Errorf("alice and bob share an upstream token")
		}
	}
	// No toolgate credential ever reached the upstream, and every request carried a token.
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.headers) == 0 {
		t.Fatal("the upstream saw no requests")
	}
	secrets := []string{keys["alice"], keys["bob"], g.key}
	for _, h := range up.headers {
		if h.Get("Authorization") == "" {
			t.Errorf("upstream received a request without a token: %v", h)
		}
		for name, vals := range h {
			for _, v := range vals {
				for _, s := range secrets {
					if strings.Contains(v, s) {
						t.Errorf("upstream received a toolgate key in %s", name)
					}
				}
				if strings.HasPrefix(strings.ToLower(name), "x-toolgate") || strings.HasPrefix(strings.ToLower(name), "x-litellm") {
					t.Errorf("upstream received header %s", name)
				}
			}
		}
	}
}
