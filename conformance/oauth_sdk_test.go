package conformance

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestOAuthTypeScriptSDKLogin connects the TypeScript SDK client (1.32) with its OAuth
// provider to the gateway acting as authorization server, with no toolgate key configured
// in the client: it gets the 401 challenge, discovers the protected resource and the
// authorization server, registers dynamically, and headless chromium signs in on the
// gateway's key-paste page. Then tools/list and tools/call work with the issued token, and a
// later connection refreshes the token without the browser.
func TestOAuthTypeScriptSDKLogin(t *testing.T) {
	n := requireNode(t)
	requireChromium(t)
	dir := t.TempDir()
	goURL := startGoSSEUpstream(t)
	g := startOAuthGateway(t, dir, upstreamConfig{Name: upGo, URL: goURL, Transport: "sse"})
	waitTools(t, g.base+"/mcp/"+upGo, map[string]string{"Authorization": "Bearer " + g.key}, goToolEcho, 30e9)
	key := g.newKey(t, "oauth-sdk-user", upGo)

	for _, route := range []string{"/mcp/" + upGo, "/" + upGo + "/mcp"} {
		t.Run(route, func(t *testing.T) {
			run, stderr := runOAuthClient(t, n, "--url", g.base+route, "--login-key", key,
				"--tool", goToolEcho, "--tool-args", `{"message":"through oauth"}`)
			if !run.OK {
				t.Fatalf("client failed: %s\nsteps: %+v\nstderr: %s", run.Error, run.Steps, stderr)
			}
			// The first MCP request got the path-aware challenge.
			first := run.Steps[0]
			wantMeta := g.base + "/.well-known/oauth-protected-resource" + route
			if first.Method != http.MethodPost || first.Status != 401 ||
				!strings.Contains(first.WWWAuthenticate, `resource_metadata="`+wantMeta+`"`) {
				t.Errorf("first request: got %s %d %q, want POST 401 with resource_metadata=%q",
					first.Method, first.Status, first.WWWAuthenticate, wantMeta)
			}
			// Discovery, registration and the token exchange happened at the gateway.
			var sawPRM, sawASMeta, sawRegister, sawToken bool
			for _, s := range run.Steps {
				switch {
				case s.URL == wantMeta && s.Status == 200:
					sawPRM = true
				case strings.HasPrefix(s.URL, g.base+"/.well-known/oauth-authorization-server") && s.Status == 200:
					sawASMeta = true
				case s.URL == g.base+"/register" && s.Status == 201:
					sawRegister = true
				case s.URL == g.base+"/token" && s.Status == 200:
					sawToken = true
				}
			}
			if !sawPRM || !sawASMeta || !sawRegister || !sawToken {
				t.Errorf("flow: PRM %v, AS metadata %v, register %v, token %v; steps %+v", sawPRM, sawASMeta, sawRegister, sawToken, run.Steps)
			}
			login := run.Phases["login"]
			au, err := url.Parse(login.AuthorizeURL)
			if err != nil {
				t.Fatal(err)
			}
			q := au.Query()
			if q.Get("code_challenge_method") != "S256" || q.Get("resource") != g.base+route {
				t.Errorf("authorize request: code_challenge_method %q resource %q, want S256 and %q",
					q.Get("code_challenge_method"), q.Get("resource"), g.base+route)
			}
			if login.Iss != g.base {
				t.Errorf("authorization response iss = %q, want %q (RFC 9207)", login.Iss, g.base)
			}
			if !contains(login.Tools, goToolEcho) || login.CallError || login.Text != "Echo: through oauth" {
				t.Errorf("after login: tools %v, call %q (error %v)", login.Tools, login.Text, login.CallError)
			}
			if !login.HasRefreshToken {
				t.Errorf("no refresh token issued")
			}
			ref := run.Phases["refresh"]
			if !ref.OK || ref.BrowserRuns != 0 || !contains(ref.Tools, goToolEcho) {
				t.Errorf("later connection: ok %v, browser runs %d, refreshed %v, tools %v", ref.OK, ref.BrowserRuns, ref.Refreshed, ref.Tools)
			}
		})
	}

	// A recognised caller whose key may not use the server gets 403 insufficient_scope with
	// the route's metadata (the SDK tries one step-up, gets 403 again, and gives up).
	t.Run("key without permission", func(t *testing.T) {
		other := g.newKey(t, "oauth-sdk-no-grant")
		run, _ := runOAuthClient(t, n, "--url", g.base+"/"+upGo+"/mcp", "--login-key", other, "--no-refresh")
		if run.OK {
			t.Fatalf("a key without permission on %s listed its tools", upGo)
		}
		var got403 bool
		for _, s := range run.Steps {
			if s.Status == 403 && strings.Contains(s.WWWAuthenticate, `error="insufficient_scope"`) &&
				strings.Contains(s.WWWAuthenticate, `resource_metadata="`+g.base+"/.well-known/oauth-protected-resource/"+upGo+`/mcp"`) {
				got403 = true
			}
		}
		if !got403 {
			t.Errorf("no 403 insufficient_scope challenge; steps %+v", run.Steps)
		}
	})
}

// TestOAuthPassthroughTypeScriptSDK puts the TypeScript SDK client in front of an
// oauth_passthrough server whose own IdP issues the tokens: the gateway answers the 401,
// serves the upstream's protected-resource metadata at its own path-aware URL, and the SDK
// gets a token from the upstream's authorization server and calls a tool through the gateway.
// The caller's toolgate key travels in x-toolgate-api-key and never reaches the upstream.
func TestOAuthPassthroughTypeScriptSDK(t *testing.T) {
	n := requireNode(t)
	dir := t.TempDir()
	up := startProtectedUpstream(t)
	g := startOAuthGateway(t, dir)
	g.api(t, http.MethodPost, "/v1/mcp/server", map[string]any{"server_name": "idp", "url": up.URL,
		"transport": "http", "oauth_passthrough": true})
	key := g.newKey(t, "oauth-pt-user", "idp")

	cases := []struct {
		name    string
		headers []string
	}{
		{"no gateway key", nil},
		{"key in x-toolgate-api-key", []string{"--header", "x-toolgate-api-key: " + key}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--url", g.base + "/idp/mcp", "--auto", "--tool", goToolEcho,
				"--tool-args", `{"message":"passed through"}`}, tc.headers...)
			run, stderr := runOAuthClient(t, n, args...)
			if !run.OK {
				t.Fatalf("client failed: %s\nsteps: %+v\nstderr: %s", run.Error, run.Steps, stderr)
			}
			wantMeta := g.base + "/.well-known/oauth-protected-resource/idp/mcp"
			if s := run.Steps[0]; s.Status != 401 || !strings.Contains(s.WWWAuthenticate, `resource_metadata="`+wantMeta+`"`) {
				t.Errorf("first request: got %d %q, want 401 pointing at %s", s.Status, s.WWWAuthenticate, wantMeta)
			}
			var tokenAtUpstreamAS bool
			for _, s := range run.Steps {
				if s.URL == up.AS.URL+"/token" && s.Status == 200 {
					tokenAtUpstreamAS = true
				}
				if strings.HasPrefix(s.URL, g.base+"/token") || strings.HasPrefix(s.URL, g.base+"/register") {
					t.Errorf("the client used the gateway's authorization server for a pass-through server: %s", s.URL)
				}
			}
			if !tokenAtUpstreamAS {
				t.Errorf("no token from the upstream's authorization server; steps %+v", run.Steps)
			}
			login := run.Phases["login"]
			if login.Text != "Echo: passed through" || !contains(login.Tools, goToolEcho) {
				t.Errorf("through the gateway: tools %v, call %q", login.Tools, login.Text)
			}
			if ref := run.Phases["refresh"]; !ref.OK {
				t.Errorf("refresh at the upstream's authorization server: %+v", ref)
			}
		})
	}
	// The upstream saw the IdP's tokens and never a toolgate credential.
	var authorized int
	for _, h := range up.headers() {
		if h.Get("X-Toolgate-Api-Key") != "" || h.Get("X-Litellm-Api-Key") != "" {
			t.Errorf("upstream received a toolgate key header")
		}
		a := h.Get("Authorization")
		if strings.Contains(a, key) || strings.Contains(a, g.key) || strings.Contains(a, "tgat_") {
			t.Errorf("upstream received a toolgate credential in Authorization: %q", a)
		}
		if a != "" {
			authorized++
		}
	}
	if authorized == 0 {
		t.Errorf("the upstream never received the caller's token")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
