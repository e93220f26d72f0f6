package conformance

// This file starts toolgate with OAuth on (general_settings.public_url and the built-in
// authorization server) for the real-client OAuth tests, and the pieces they share: a
// protected Go upstream whose own IdP issues the tokens (for pass-through), key creation,
// and the headless chromium "browser".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/oauth"
)

// requireChromium returns the chromium binary the login tests drive, failing (not
// skipping) when Node is installed but chromium is not: CI installs both.
func requireChromium(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("chromium not found at %s (apt-get install -y chromium, or set CHROMIUM): %v", p, err)
	}
	return p
}

// startOAuthGateway starts toolgate with OAuth discovery and the built-in authorization
// server (login with a toolgate key), fronting ups: the binary in $TOOLGATE_BIN, else
// in-process. The public URL is the gateway's own loopback address.
func startOAuthGateway(tb testing.TB, dir string, ups ...upstreamConfig) *gateway {
	tb.Helper()
	key := fmt.Sprintf("sk-toolgate-oauth-%d", time.Now().UnixNano())
	var g *gateway
	if bin := gatewayBinary(tb); bin != "" {
		g = startGatewayBinary(tb, bin, dir, key, ups, true)
	} else {
		g = startGatewayInProcess(tb, dir, key, ups, true)
	}
	waitHTTP(tb, g.proc, g.base+"/health/liveliness", 60*time.Second)
	return g
}

// api calls the management API with the master key and decodes the JSON answer.
func (g *gateway) api(tb testing.TB, method, path string, body any) map[string]any {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, g.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// newKey creates a virtual key that may use servers and returns its secret.
func (g *gateway) newKey(tb testing.TB, alias string, servers ...string) string {
	tb.Helper()
	if servers == nil {
		servers = []string{}
	}
	out := g.api(tb, http.MethodPost, "/key/generate", map[string]any{"key_alias": alias,
		"object_permission": map[string]any{"mcp_servers": servers}})
	k, _ := out["key"].(string)
	if k == "" {
		tb.Fatalf("/key/generate returned no key: %v", out)
	}
	return k
}

// protectedUpstream is a Go MCP server (the harness's echo/count/greet server, streamable
// HTTP at /mcp) that accepts only bearer tokens issued by its own authorization server (an
// oauth.TestAuthServer that approves every login at once), publishes RFC 9728 metadata for
// /mcp naming that server, and records the Authorization and API-key headers it receives.
type protectedUpstream struct {
	URL string // the MCP endpoint
	AS  *oauth.TestAuthServer

	mu   sync.Mutex
	seen []http.Header
}

func startProtectedUpstream(tb testing.TB) *protectedUpstream {
	tb.Helper()
	u := &protectedUpstream{AS: oauth.NewTestAuthServer(tb)}
	// Clients of a pass-through route name the gateway's route as their RFC 8707 resource.
	// Like many IdPs, this one ignores the parameter (the test AS would refuse a foreign
	// resource); a real upstream IdP must accept the gateway's URL or ignore it. Its tokens
	// are also given a prefix of their own: the test AS is toolgate's code, and a token
	// shaped like toolgate's own (tgat_) is never passed through.
	as := u.AS.Server.Config.Handler
	u.AS.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		q.Del("resource")
		r.URL.RawQuery = q.Encode()
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err == nil {
				for _, f := range []url.Values{r.PostForm, r.Form} {
					f.Del("resource")
					if rt := f.Get("refresh_token"); rt != "" {
						f.Set("refresh_token", fromIdPToken(rt))
					}
				}
			}
		}
		if r.URL.Path != "/token" {
			as.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		as.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var tok map[string]any
		if json.Unmarshal(body, &tok) == nil {
			for _, f := range []string{"access_token", "refresh_token"} {
				if v, ok := tok[f].(string); ok {
					tok[f] = toIdPToken(v)
				}
			}
			body, _ = json.Marshal(tok)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
	mcpHTTP := server.NewStreamableHTTPServer(newGoMCPServer())
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	tb.Cleanup(ts.Close)
	u.URL = ts.URL + "/mcp"
	meta := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"resource": u.URL, "authorization_servers": []string{u.AS.URL},
			"scopes_supported": []string{"mcp"}, "bearer_methods_supported": []string{"header"}})
	}
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp", meta)
	mux.HandleFunc("/.well-known/oauth-protected-resource", meta)
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		challenge := `Bearer resource_metadata="` + ts.URL + `/.well-known/oauth-protected-resource/mcp", scope="mcp"`
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if _, err := u.AS.Introspect(fromIdPToken(tok)); err != nil {
			w.Header().Set("WWW-Authenticate", challenge+`, error="invalid_token"`)
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		mcpHTTP.ServeHTTP(w, r)
	})
	return u
}

// toIdPToken and fromIdPToken translate between the test AS's token prefixes and the
// upstream IdP's own ("idp-at-", "idp-rt-").
func toIdPToken(t string) string {
	if rest, ok := strings.CutPrefix(t, oauth.AccessTokenPrefix); ok {
		return "idp-at-" + rest
	}
	if rest, ok := strings.CutPrefix(t, oauth.RefreshTokenPrefix); ok {
		return "idp-rt-" + rest
	}
	return t
}

func fromIdPToken(t string) string {
	if rest, ok := strings.CutPrefix(t, "idp-at-"); ok {
		return oauth.AccessTokenPrefix + rest
	}
	if rest, ok := strings.CutPrefix(t, "idp-rt-"); ok {
		return oauth.RefreshTokenPrefix + rest
	}
	return t
}

// headers returns a copy of every request's headers the upstream received on /mcp.
func (u *protectedUpstream) headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// oauthRun is oauth_client.mjs's report.
type oauthRun struct {
	OK    bool `json:"ok"`
	Steps []struct {
		Method          string `json:"method"`
		URL             string `json:"url"`
		Status          int    `json:"status"`
		WWWAuthenticate string `json:"wwwAuthenticate"`
	} `json:"steps"`
	Phases map[string]struct {
		OK              bool     `json:"ok"`
		Tools           []string `json:"tools"`
		Text            string   `json:"text"`
		CallError       bool     `json:"callError"`
		AuthorizeURL    string   `json:"authorizeURL"`
		Iss             string   `json:"iss"`
		HasRefreshToken bool     `json:"hasRefreshToken"`
		BrowserRuns     int      `json:"browserRuns"`
		Refreshed       bool     `json:"refreshed"`
	} `json:"phases"`
	Browser *struct {
		OK  bool   `json:"ok"`
		URL string `json:"url"`
	} `json:"browser"`
	Error string `json:"error"`
}

// runOAuthClient runs conformance/oauth_client.mjs with args and parses its report.
func runOAuthClient(tb testing.TB, n nodeEnv, args ...string) (oauthRun, string) {
	tb.Helper()
	argv := append([]string{n.node, filepath.Join(n.dir, "oauth_client.mjs")}, args...)
	stdout, stderr, err := runCmd(context.Background(), n.dir, n.env(), 120*time.Second, argv...)
	var run oauthRun
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if jerr := json.Unmarshal([]byte(line), &run); jerr != nil {
		tb.Fatalf("oauth_client.mjs: %v (exit %v)\nstdout: %s\nstderr: %s", jerr, err, stdout, stderr)
	}
	return run, stderr
}

// lookPath finds a program or fails the test.
func lookPath(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found: %v", name, err)
	}
	return p
}
