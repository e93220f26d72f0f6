package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/store"
)

// newUpstream starts an in-process MCP server over streamable HTTP whose tools answer
// "<name>/<tool>: <message>". It returns its /mcp URL.
func newUpstream(t testing.TB, name string, tools ...string) string {
	t.Helper()
	s := server.NewMCPServer(name, "1.0.0", server.WithToolCapabilities(true))
	for _, tool := range tools {
		s.AddTool(mcp.NewTool(tool, mcp.WithDescription(tool+" on "+name), mcp.WithString("message")),
			func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText(name + "/" + req.Params.Name + ": " + req.GetString("message", "")), nil
			})
	}
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp"
}

// dialMCP connects an mcp-go client to url with headers; legacy selects 2025-11-25.
func dialMCP(t testing.TB, url string, legacy bool, headers map[string]string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	var opts []client.ClientOption
	if legacy {
		opts = append(opts, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	}
	c := client.NewClient(tr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func toolNamesOf(t testing.TB, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	sort.Strings(names)
	return names
}

func callText(t testing.TB, c *client.Client, name, message string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = map[string]any{"message": message}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if len(res.Content) == 0 {
		t.Fatalf("call %s: empty result", name)
	}
	return res.Content[0].(mcp.TextContent).Text
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEnd registers two upstreams through the API, with no restart, and lists and
// calls their tools through /mcp with an mcp-go client of each protocol generation.
func TestEndToEnd(t *testing.T) {
	// Upstreams first: cleanups run in reverse, so the gateway lets go of them before they close.
	alpha := newUpstream(t, "alpha", "echo", "add")
	beta := newUpstream(t, "beta", "echo")
	g := newTestGateway(t, func(c *Config) { c.SaltKey = "test-salt" })
	for name, url := range map[string]string{"alpha": alpha, "beta": beta} {
		r := g.admin(t, "POST", "/v1/mcp/server", map[string]any{"server_name": name, "url": url, "transport": "http"})
		if r.status != 201 {
			t.Fatalf("register %s: got %d %s", name, r.status, r.body)
		}
	}
	waitFor(t, "both upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 2
	})
	auth := map[string]string{"Authorization": "Bearer " + testMasterKey}
	for _, legacy := range []bool{false, true} {
		c := dialMCP(t, g.url+"/mcp", legacy, auth)
		want := []string{"alpha-add", "alpha-echo", "beta-echo"}
		if diff := cmp.Diff(want, toolNamesOf(t, c)); diff != "" {
			t.Errorf("legacy=%v: /mcp tools (-want +got):\n%s", legacy, diff)
		}
		if got := callText(t, c, "beta-echo", "hi"); got != "beta/echo: hi" {
			t.Errorf("legacy=%v: call beta-echo = %q", legacy, got)
		}
		one := dialMCP(t, g.url+"/mcp/alpha", legacy, auth)
		if diff := cmp.Diff([]string{"add", "echo"}, toolNamesOf(t, one)); diff != "" {
			t.Errorf("legacy=%v: /mcp/alpha tools (-want +got):\n%s", legacy, diff)
		}
		if got := callText(t, one, "echo", "yo"); got != "alpha/echo: yo" {
			t.Errorf("legacy=%v: call echo on /mcp/alpha = %q", legacy, got)
		}
	}

	// REST views of the same registry.
	r := g.admin(t, "GET", "/v1/mcp/tools", nil)
	if r.status != 200 || strings.Count(string(r.body), `"server_name"`) != 3 {
		t.Errorf("/v1/mcp/tools: got %d %s", r.status, r.body)
	}
	r = g.admin(t, "GET", "/mcp-rest/tools/list?server_name=beta", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"name":"beta-echo"`) || strings.Contains(string(r.body), "alpha") {
		t.Errorf("/mcp-rest/tools/list?server_name=beta: got %d %s", r.status, r.body)
	}
	r = g.admin(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "alpha-echo", "arguments": map[string]any{"message": "rest"}})
	if r.status != 200 || !strings.Contains(string(r.body), "alpha/echo: rest") {
		t.Errorf("/mcp-rest/tools/call: got %d %s", r.status, r.body)
	}
	r = g.admin(t, "POST", "/mcp-rest/tools/call", map[string]any{"server_name": "beta", "name": "echo", "arguments": map[string]any{"message": "x"}})
	if r.status != 200 || !strings.Contains(string(r.body), "beta/echo: x") {
		t.Errorf("/mcp-rest/tools/call by server_name: got %d %s", r.status, r.body)
	}

	// The metrics saw the calls and the health.
	m := string(g.admin(t, "GET", "/metrics", nil).body)
	for _, want := range []string{
		`toolgate_mcp_tool_calls_total{outcome="success",server="beta",tool="echo"}`,
		`toolgate_upstream_healthy{server="alpha"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The stored health follows the pool's.
	waitFor(t, "stored health", func() bool {
		srv, err := g.db.MCPServerByName(context.Background(), "alpha")
		return err == nil && srv.HealthStatus == store.HealthHealthy
	})

	// Deleting takes effect at once.
	srv, err := g.db.MCPServerByName(context.Background(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	if r := g.admin(t, "DELETE", "/v1/mcp/server/"+srv.ID, nil); r.status != 200 {
		t.Fatalf("delete beta: %d %s", r.status, r.body)
	}
	c := dialMCP(t, g.url+"/mcp", false, auth)
	if diff := cmp.Diff([]string{"alpha-add", "alpha-echo"}, toolNamesOf(t, c)); diff != "" {
		t.Errorf("after deleting beta (-want +got):\n%s", diff)
	}
}

// TestKeylessServer checks the per-server opt-in: anonymous callers reach that server's own
// routes and nothing else.
func TestKeylessServer(t *testing.T) {
	open := newUpstream(t, "open", "ping")
	closed := newUpstream(t, "closed", "secret")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{
			{Name: "open", URL: open, AllowKeyless: true},
			{Name: "closed", URL: closed},
		}
	})
	if !strings.Contains(g.logs.String(), "KEYLESS ACCESS ENABLED") {
		t.Errorf("no loud warning for the keyless server in the logs")
	}
	c := dialMCP(t, g.url+"/mcp/open", true, nil)
	if diff := cmp.Diff([]string{"ping"}, toolNamesOf(t, c)); diff != "" {
		t.Errorf("/mcp/open tools (-want +got):\n%s", diff)
	}
	if got := callText(t, c, "ping", "x"); got != "open/ping: x" {
		t.Errorf("call ping = %q", got)
	}
	for _, path := range []string{"/mcp", "/mcp/closed", "/closed/mcp", "/mcp/open,closed", "/v1/mcp/server", "/v1/mcp/tools", "/mcp-rest/tools/list", "/health/readiness/details"} {
		if r := g.do(t, "POST", path, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); r.status != 401 && r.status != 405 {
			t.Errorf("anonymous %s: got %d, want 401", path, r.status)
		}
		if r := g.do(t, "GET", path, nil); r.status != 401 && r.status != 405 {
			t.Errorf("anonymous GET %s: got %d, want 401", path, r.status)
		}
	}
}

// TestReplicaPicksUpRegistration runs two gateways on one database: a server registered
// through one is served by the other after its periodic registry reload.
func TestReplicaPicksUpRegistration(t *testing.T) {
	up := newUpstream(t, "shared", "echo")
	a := newTestGateway(t, func(c *Config) { c.RegistryRefresh = -1 })
	b, err := New(Config{Store: a.db, MasterKey: testMasterKey, RegistryRefresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if r := a.admin(t, "POST", "/v1/mcp/server", map[string]any{"server_name": "shared", "url": up}); r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	bs := httptest.NewServer(b.Handler())
	t.Cleanup(bs.Close)
	// The registry (what the management API shows) is stored before the federation routes
	// the server: wait for the route itself.
	waitFor(t, "replica b to serve the new server", func() bool {
		req, _ := http.NewRequest(http.MethodPost, bs.URL+"/mcp/shared", strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}`))
		req.Header.Set("Authorization", "Bearer "+testMasterKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	c := dialMCP(t, bs.URL+"/mcp/shared", false, map[string]string{"Authorization": "Bearer " + testMasterKey})
	if diff := cmp.Diff([]string{"echo"}, toolNamesOf(t, c)); diff != "" {
		t.Errorf("tools on replica b (-want +got):\n%s", diff)
	}
}

// TestRequestIDReachesUpstream: the caller's x-request-id is sent on to the upstream.
func TestRequestIDReachesUpstream(t *testing.T) {
	s := server.NewMCPServer("rid", "1")
	s.AddTool(mcp.NewTool("whoami"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("request id " + req.Header.Get("X-Request-Id")), nil
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "rid", URL: ts.URL + "/mcp"}}
	})
	var r response
	waitFor(t, "the call to go through", func() bool {
		r = g.do(t, "POST", "/mcp-rest/tools/call", `{"name":"rid-whoami"}`,
			"Authorization", "Bearer "+testMasterKey, "X-Request-Id", "rid-12345")
		return r.status == 200
	})
	if !strings.Contains(string(r.body), "request id rid-12345") {
		t.Errorf("upstream did not see the request id: %s", r.body)
	}
}
