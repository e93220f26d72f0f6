package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/store"
)

// wiringGateway serves three real upstreams: alpha (add, echo) and beta (echo) on the
// public internet, intra (echo) internal-only. mod adjusts the config (network trust).
// It returns the gateway and a key granted all three servers and the toolset "just-alpha"
// ({alpha, echo}); the toolset "just-beta" ({beta, echo}) exists but is not granted.
func wiringGateway(t *testing.T, mod func(*Config)) (*testGateway, string) {
	t.Helper()
	alpha := newUpstream(t, "alpha", "add", "echo")
	beta := newUpstream(t, "beta", "echo")
	intra := newUpstream(t, "intra", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{
			{Name: "alpha", URL: alpha, AvailableOnPublicInternet: true},
			{Name: "beta", URL: beta, AvailableOnPublicInternet: true},
			{Name: "intra", URL: intra},
		}
		if mod != nil {
			mod(c)
		}
	})
	waitFor(t, "three upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 3
	})
	ts := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "just-alpha",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "echo"}}}), 200)
	must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "just-beta",
		"tools": []map[string]any{{"server_id": "beta", "tool_name": "echo"}}}), 200)
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"object_permission": map[string]any{
		"mcp_servers": []string{"alpha", "beta", "intra"}, "mcp_toolsets": []string{ts["toolset_id"].(string)}}}), 200)
	return g, k["key"].(string)
}

// restToolNames lists the caller's tools through GET path (a REST listing route).
func restToolNames(t *testing.T, g *testGateway, path string, headers ...string) []string {
	t.Helper()
	r := g.do(t, "GET", path, nil, headers...)
	if r.status != 200 {
		t.Fatalf("GET %s: got %d %s, want 200", path, r.status, r.body)
	}
	var resp toolsResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, tool := range resp.Tools {
		names = append(names, tool.Name)
	}
	return names
}

// TestToolsetHeaderOnMCPRoutes: x-mcp-toolset-id narrows what a real MCP client sees and
// may call on every MCP route and on the REST routes; a toolset the key was not granted
// is refused with a 403 JSON body before any MCP traffic.
func TestToolsetHeaderOnMCPRoutes(t *testing.T) {
	g, key := wiringGateway(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + key}
	narrowed := map[string]string{"Authorization": "Bearer " + key, "x-mcp-toolset-id": "just-alpha"}

	if diff := cmp.Diff([]string{"alpha-add", "alpha-echo", "beta-echo", "intra-echo"}, toolNamesOf(t, dialMCP(t, g.url+"/mcp", false, auth))); diff != "" {
		t.Errorf("no header (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		path string
		want []string
		call string
		deny []string
	}{
		{"/mcp", []string{"alpha-echo"}, "alpha-echo", []string{"alpha-add", "beta-echo", "intra-echo"}},
		{"/mcp/alpha", []string{"echo"}, "echo", []string{"add"}},
		{"/alpha/mcp", []string{"echo"}, "echo", []string{"add"}},
	} {
		for _, legacy := range []bool{false, true} {
			c := dialMCP(t, g.url+tc.path, legacy, narrowed)
			if diff := cmp.Diff(tc.want, toolNamesOf(t, c)); diff != "" {
				t.Errorf("%s legacy=%v narrowed to just-alpha (-want +got):\n%s", tc.path, legacy, diff)
			}
			if got := callText(t, c, tc.call, "hi"); got != "alpha/echo: hi" {
				t.Errorf("%s: call %s = %q", tc.path, tc.call, got)
			}
			for _, name := range tc.deny {
				if callRefused(t, c, name) == "" {
					t.Errorf("%s legacy=%v: called %s outside the requested toolset", tc.path, legacy, name)
				}
			}
		}
	}
	// Server routes of a server outside the toolset do not exist for the narrowed caller.
	for _, path := range []string{"/mcp/beta", "/beta/mcp", "/mcp/alpha,beta"} {
		if st, body := rawMCP(t, g.s.Handler(), "POST", path, "127.0.0.1:1", narrowed); st != 403 && st != 404 {
			t.Errorf("%s narrowed to just-alpha: got %d %s, want 403 or 404", path, st, body)
		}
		if st, body := rawMCP(t, g.s.Handler(), "POST", path, "127.0.0.1:1", auth); st != 200 {
			t.Errorf("%s without narrowing: got %d %s, want 200", path, st, body)
		}
	}

	// REST listing and calling narrow the same way.
	for _, path := range []string{"/v1/mcp/tools", "/mcp-rest/tools/list"} {
		if diff := cmp.Diff([]string{"alpha-echo"}, restToolNames(t, g, path, "Authorization", "Bearer "+key, "x-mcp-toolset-id", "just-alpha")); diff != "" {
			t.Errorf("%s narrowed (-want +got):\n%s", path, diff)
		}
	}
	r := g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "alpha-add"}, "Authorization", "Bearer "+key, "x-mcp-toolset-id", "just-alpha")
	if r.status != 404 || r.errorField(t, "param") != "name" {
		t.Errorf("REST call outside the toolset: got %d %s, want 404 naming name", r.status, r.body)
	}
	must(t, g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "alpha-echo"}, "Authorization", "Bearer "+key, "x-mcp-toolset-id", "just-alpha"), 200)

	// A toolset not granted, or unknown: 403 JSON naming the header, on every route.
	for _, ts := range []string{"just-beta", "no-such-toolset"} {
		for _, path := range []string{"/mcp", "/mcp/alpha", "/alpha/mcp", "/mcp/sse"} {
			method := "POST"
			if path == "/mcp/sse" {
				method = "GET"
			}
			st, body := rawMCP(t, g.s.Handler(), method, path, "127.0.0.1:1", map[string]string{"Authorization": "Bearer " + key, "x-mcp-toolset-id": ts})
			if st != 403 || !strings.Contains(body, `"param":"x-mcp-toolset-id"`) || !strings.Contains(body, ts) {
				t.Errorf("%s %s with toolset %s: got %d %s, want 403 naming x-mcp-toolset-id", method, path, ts, st, body)
			}
		}
		for _, path := range []string{"/v1/mcp/tools", "/mcp-rest/tools/list"} {
			r := g.do(t, "GET", path, nil, "Authorization", "Bearer "+key, "x-mcp-toolset-id", ts)
			if r.status != 403 || r.errorField(t, "param") != "x-mcp-toolset-id" {
				t.Errorf("GET %s with toolset %s: got %d %s, want 403", path, ts, r.status, r.body)
			}
		}
		r := g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "beta-echo"}, "Authorization", "Bearer "+key, "x-mcp-toolset-id", ts)
		if r.status != 403 || r.errorField(t, "param") != "x-mcp-toolset-id" {
			t.Errorf("REST call with toolset %s: got %d %s, want 403", ts, r.status, r.body)
		}
	}
}

// rawMCP sends one JSON-RPC request (initialize for POST; a stream open for GET) straight
// to h from remote, and returns the status and body. GET streams are not read: a refusal
// answers at once, an accepted stream is cut after its headers.
func rawMCP(t *testing.T, h http.Handler, method, path, remote string, headers map[string]string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, method, path, body)
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	if method == "GET" {
		cancel() // an SSE stream that is accepted ends at once
	}
	h.ServeHTTP(rec, req)
	cancel()
	return rec.Code, rec.Body.String()
}

// dialSSE connects an mcp-go client over the legacy HTTP+SSE transport to url (the
// gateway's /mcp/sse) with headers on the stream and on every message.
func dialSSE(t *testing.T, url string, headers map[string]string) *client.Client {
	t.Helper()
	c, err := client.NewSSEMCPClient(url, client.WithHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	// The stream lives as long as Start's context: the test's, not the dial timeout's.
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("SSE %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.ProtocolVersion20241105
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e-sse", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("SSE initialize %s: %v", url, err)
	}
	return c
}

// behindPeer serves h on a new loopback server that presents every request as coming from
// peer (the TCP peer address the gateway sees), and returns its URL.
func behindPeer(t *testing.T, h http.Handler, peer string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = peer
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestNetworkScopeOnMCPRoutes: a server with available_on_public_internet false is
// invisible and uncallable for external callers on /mcp, its own routes and the REST
// routes, and visible to internal ones; X-Forwarded-For names the caller only when the
// peer is a trusted proxy.
func TestNetworkScopeOnMCPRoutes(t *testing.T) {
	g, key := wiringGateway(t, func(c *Config) {
		c.TrustForwardedFor = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
	all := []string{"alpha-add", "alpha-echo", "beta-echo", "intra-echo"}
	public := []string{"alpha-add", "alpha-echo", "beta-echo"}
	for _, tc := range []struct {
		name string
		xff  string
		want []string
	}{
		{"loopback proxy, no forwarded address", "", all},
		{"forwarded for a private address", "10.1.2.3", all},
		{"forwarded for a public address", "203.0.113.9", public},
		{"public client behind two trusted hops", "203.0.113.9, 127.0.0.2", public},
		{"spoofed internal left-most hop", "10.0.0.1, 203.0.113.9", public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": "Bearer " + key}
			if tc.xff != "" {
				h["X-Forwarded-For"] = tc.xff
			}
			for _, legacy := range []bool{false, true} {
				c := dialMCP(t, g.url+"/mcp", legacy, h)
				if diff := cmp.Diff(tc.want, toolNamesOf(t, c)); diff != "" {
					t.Errorf("/mcp legacy=%v (-want +got):\n%s", legacy, diff)
				}
				internal := len(tc.want) == len(all)
				if refused := callRefused(t, c, "intra-echo"); (refused == "") != internal {
					t.Errorf("/mcp legacy=%v: intra-echo refused=%q, internal=%v", legacy, refused, internal)
				}
			}
			sse := dialSSE(t, g.url+"/mcp/sse", h)
			if diff := cmp.Diff(tc.want, toolNamesOf(t, sse)); diff != "" {
				t.Errorf("/mcp/sse (-want +got):\n%s", diff)
			}
			if refused := callRefused(t, sse, "intra-echo"); (refused == "") != (len(tc.want) == len(all)) {
				t.Errorf("/mcp/sse: intra-echo refused=%q", refused)
			}
			headers := []string{"Authorization", "Bearer " + key}
			if tc.xff != "" {
				headers = append(headers, "X-Forwarded-For", tc.xff)
			}
			if diff := cmp.Diff(tc.want, restToolNames(t, g, "/v1/mcp/tools", headers...)); diff != "" {
				t.Errorf("/v1/mcp/tools (-want +got):\n%s", diff)
			}
			r := g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"server_name": "intra", "name": "echo"}, headers...)
			if len(tc.want) == len(all) {
				if r.status != 200 {
					t.Errorf("internal REST call of intra/echo: got %d %s", r.status, r.body)
				}
			} else if r.status != 404 {
				t.Errorf("external REST call of intra/echo: got %d %s, want 404", r.status, r.body)
			}
			// The server's own routes are refused to an external caller (403 from admission,
			// or 404 from the MCP handler: either way nothing of the server is served).
			for _, path := range []string{"/mcp/intra", "/intra/mcp"} {
				st, body := rawMCP(t, g.s.Handler(), "POST", path, "127.0.0.1:1", map[string]string{"Authorization": "Bearer " + key, "X-Forwarded-For": tc.xff})
				if internal := len(tc.want) == len(all); internal && st != 200 || !internal && st != 403 && st != 404 {
					t.Errorf("%s internal=%v: got %d %s", path, internal, st, body)
				}
			}
		})
	}

	// A peer that is not a trusted proxy: its X-Forwarded-For is ignored both ways.
	h := map[string]string{"Authorization": "Bearer " + key, "X-Forwarded-For": "10.0.0.1"}
	if got := toolNamesOf(t, dialMCP(t, behindPeer(t, g.s.Handler(), "203.0.113.5:4000")+"/mcp", false, h)); !cmp.Equal(got, public) {
		t.Errorf("external peer claiming a private address: got %v, want %v", got, public)
	}
	h["X-Forwarded-For"] = "203.0.113.9"
	if got := toolNamesOf(t, dialMCP(t, behindPeer(t, g.s.Handler(), "192.168.1.9:4000")+"/mcp", false, h)); !cmp.Equal(got, all) {
		t.Errorf("private untrusted peer forwarding for a public address: got %v, want %v", got, all)
	}
}

// TestForwardedForTrust: X-Forwarded-For is ignored unless forwarding is enabled and the
// peer is trusted; enabled with no trusted ranges, every caller is external.
func TestForwardedForTrust(t *testing.T) {
	all := []string{"alpha-add", "alpha-echo", "beta-echo", "intra-echo"}
	public := []string{"alpha-add", "alpha-echo", "beta-echo"}
	for _, tc := range []struct {
		name    string
		trust   bool
		proxies []string
		xff     string
		want    []string
	}{
		{"forwarding off: header ignored", false, nil, "203.0.113.9", all},
		{"loopback peer not in the trusted ranges: header ignored", true, []string{"10.0.0.0/8"}, "203.0.113.9", all},
		{"forwarding on, no trusted ranges: fail closed", true, nil, "", public},
		{"forwarding on, no trusted ranges, internal claim: fail closed", true, nil, "10.0.0.1", public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, key := wiringGateway(t, func(c *Config) {
				c.TrustForwardedFor = tc.trust
				for _, p := range tc.proxies {
					c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
				}
			})
			h := map[string]string{"Authorization": "Bearer " + key}
			if tc.xff != "" {
				h["X-Forwarded-For"] = tc.xff
			}
			if diff := cmp.Diff(tc.want, toolNamesOf(t, dialMCP(t, g.url+"/mcp", false, h))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestRESTCallByServer: /mcp-rest/tools/call resolves a tool on a named server through the
// federation's table (never by joining names with "-"), and unknown or hidden tools and
// servers are 404 JSON naming the parameter, not 502.
func TestRESTCallByServer(t *testing.T) {
	alpha := newUpstream(t, "alpha", "get.weather", "echo")
	beta := newUpstream(t, "beta", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{
			{ID: "srv-a", Name: "alpha", URL: alpha, AvailableOnPublicInternet: true},
			{ID: "srv-b", Name: "beta", URL: beta, AvailableOnPublicInternet: true},
		}
	})
	waitFor(t, "two upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 2
	})
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"object_permission": map[string]any{"mcp_servers": []string{"alpha"}}}), 200)
	key := k["key"].(string)
	// The federated name of get.weather is not "alpha-get.weather": find it in the listing.
	var federated string
	for _, n := range restToolNames(t, g, "/v1/mcp/tools", "Authorization", "Bearer "+key) {
		if strings.HasPrefix(n, "alpha-get_weather") {
			federated = n
		}
	}
	if federated == "" {
		t.Fatal("get.weather is not listed")
	}
	text := func(r response) string {
		var res struct {
			Content []struct{ Text string } `json:"content"`
		}
		_ = json.Unmarshal(r.body, &res)
		if len(res.Content) == 0 {
			return ""
		}
		return res.Content[0].Text
	}
	for _, body := range []map[string]any{
		{"server_name": "alpha", "name": "get.weather"},
		{"server_id": "srv-a", "name": "get.weather"},
		{"server_name": "alpha", "name": federated},
		{"name": federated},
	} {
		body["arguments"] = map[string]any{"message": "rain"}
		r := g.as(t, key, "POST", "/mcp-rest/tools/call", body)
		if r.status != 200 || text(r) != "alpha/get.weather: rain" {
			t.Errorf("call %v: got %d %s", body, r.status, r.body)
		}
	}
	for _, tc := range []struct {
		body   map[string]any
		status int
		param  string
	}{
		{map[string]any{"server_name": "alpha", "name": "nope"}, 404, "name"},
		{map[string]any{"name": "alpha-nope"}, 404, "name"},
		{map[string]any{"name": "alpha-get.weather"}, 404, "name"},
		{map[string]any{"server_name": "beta", "name": "echo"}, 404, "name"}, // not granted
		{map[string]any{"name": "beta-echo"}, 404, "name"},                   // not granted
		{map[string]any{"server_name": "zeta", "name": "echo"}, 404, "server_name"},
		{map[string]any{"server_id": "srv-z", "name": "echo"}, 404, "server_id"},
		{map[string]any{"server_id": "srv-a", "server_name": "beta", "name": "echo"}, 400, "server_name"},
		{map[string]any{"server_name": "alpha"}, 400, "name"},
	} {
		r := g.as(t, key, "POST", "/mcp-rest/tools/call", tc.body)
		if r.status != tc.status || r.errorField(t, "param") != tc.param {
			t.Errorf("call %v: got %d %s, want %d naming %s", tc.body, r.status, r.body, tc.status, tc.param)
		}
	}
}

// newRichUpstream is newUpstream with one tool "t", one resource "res://doc" and one
// prompt "p".
func newRichUpstream(t *testing.T, name string) string {
	t.Helper()
	s := server.NewMCPServer(name, "1.0.0", server.WithToolCapabilities(true), server.WithResourceCapabilities(false, true), server.WithPromptCapabilities(true))
	s.AddTool(mcp.NewTool("t"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(name), nil
	})
	s.AddResource(mcp.NewResource("res://doc", "doc", mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: "res://doc", MIMEType: "text/plain", Text: name}}, nil
		})
	s.AddPrompt(mcp.NewPrompt("p"), func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(name))}}, nil
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp"
}

// TestNetworkScopeResourcesPrompts: resources and prompts of an internal-only server are
// neither listed nor readable for an external caller on /mcp, and are for an internal one.
func TestNetworkScopeResourcesPrompts(t *testing.T) {
	pub, intra := newRichUpstream(t, "pub"), newRichUpstream(t, "intra")
	g := newTestGateway(t, func(c *Config) {
		c.TrustForwardedFor = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		c.MCPServers = []*store.MCPServer{{Name: "pub", URL: pub, AvailableOnPublicInternet: true}, {Name: "intra", URL: intra}}
	})
	waitFor(t, "two upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 2
	})
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"object_permission": map[string]any{"mcp_servers": []string{"pub", "intra"}}}), 200)
	for _, tc := range []struct {
		xff      string
		internal bool
	}{{"", true}, {"203.0.113.9", false}} {
		h := map[string]string{"Authorization": "Bearer " + k["key"].(string)}
		if tc.xff != "" {
			h["X-Forwarded-For"] = tc.xff
		}
		for _, legacy := range []bool{false, true} {
			c := dialMCP(t, g.url+"/mcp", legacy, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			pl, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var uris, prompts []string
			for _, r := range rl.Resources {
				uris = append(uris, r.URI)
			}
			for _, p := range pl.Prompts {
				prompts = append(prompts, p.Name)
			}
			wantURIs, wantPrompts := []string{"toolgate://pub/res://doc"}, []string{"pub-p"}
			if tc.internal {
				wantURIs, wantPrompts = append(wantURIs, "toolgate://intra/res://doc"), append(wantPrompts, "intra-p")
			}
			slices.Sort(uris)
			slices.Sort(prompts)
			slices.Sort(wantURIs)
			slices.Sort(wantPrompts)
			if !slices.Equal(uris, wantURIs) || !slices.Equal(prompts, wantPrompts) {
				t.Errorf("internal=%v legacy=%v: resources %v prompts %v, want %v %v", tc.internal, legacy, uris, prompts, wantURIs, wantPrompts)
			}
			read := mcp.ReadResourceRequest{}
			read.Params.URI = "toolgate://intra/res://doc"
			_, rerr := c.ReadResource(ctx, read)
			get := mcp.GetPromptRequest{}
			get.Params.Name = "intra-p"
			_, perr := c.GetPrompt(ctx, get)
			cancel()
			if (rerr == nil) != tc.internal || (perr == nil) != tc.internal {
				t.Errorf("internal=%v legacy=%v: read intra resource err=%v, get intra prompt err=%v", tc.internal, legacy, rerr, perr)
			}
		}
	}
}
