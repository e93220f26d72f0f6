package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/store"
)

// TestIdentityEndToEnd: two keys with different grants see different tools/list through
// /mcp with a real MCP client, cannot call what they do not see, and the explain route
// agrees with what they see.
func TestIdentityEndToEnd(t *testing.T) {
	alpha := newUpstream(t, "alpha", "echo", "add", "drop")
	beta := newUpstream(t, "beta", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{
			{Name: "alpha", URL: alpha, AvailableOnPublicInternet: true},
			{Name: "beta", URL: beta, AvailableOnPublicInternet: true},
		}
	})
	waitFor(t, "both upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 2
	})
	ts := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{
		"toolset_name": "echoes", "description": "echo everywhere",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "echo"}, {"server_id": "beta", "tool_name": "echo"}},
	}), 200)
	tsID := ts["toolset_id"].(string)
	if r := g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "echoes"}); r.status != 409 {
		t.Errorf("duplicate toolset name: got %d, want 409", r.status)
	}

	k1 := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "k1",
		"object_permission": map[string]any{"mcp_servers": []string{"alpha"}, "blocked_tools": []string{"drop"}}}), 200)
	k2 := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "k2",
		"object_permission": map[string]any{"mcp_toolsets": []string{tsID}, "mcp_tool_permissions": map[string]any{"alpha": []string{"add"}}}}), 200)
	key1, key2 := k1["key"].(string), k2["key"].(string)

	c1 := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key1})
	c2 := dialMCP(t, g.url+"/mcp", true, map[string]string{"x-litellm-api-key": key2})
	if diff := cmp.Diff([]string{"alpha-add", "alpha-echo"}, toolNamesOf(t, c1)); diff != "" {
		t.Errorf("key1 tools (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"alpha-add", "alpha-echo", "beta-echo"}, toolNamesOf(t, c2)); diff != "" {
		t.Errorf("key2 tools (-want +got):\n%s", diff)
	}
	if got := callText(t, c1, "alpha-echo", "hi"); got != "alpha/echo: hi" {
		t.Errorf("key1 calls alpha-echo: %q", got)
	}
	for _, name := range []string{"beta-echo", "alpha-drop"} {
		if callRefused(t, c1, name) == "" {
			t.Errorf("key1 called %s, which it does not see", name)
		}
	}

	// The explain route gives the same verdicts.
	for _, tc := range []struct {
		alias, server, tool string
		want                bool
		deniedBy            string
	}{
		{"k1", "alpha", "echo", true, ""},
		{"k1", "alpha", "drop", false, "blocked_tools"},
		{"k1", "beta", "echo", false, "key"},
		{"k2", "beta", "echo", true, ""},
		{"k2", "alpha", "drop", false, "key"},
	} {
		r := must(t, g.admin(t, "GET", "/v1/mcp/access/explain?key_alias="+tc.alias+"&server="+tc.server+"&tool="+tc.tool, nil), 200)
		if r["allowed"] != tc.want || (r["denied_by"] != nil && r["denied_by"] != tc.deniedBy) || (tc.deniedBy != "" && r["denied_by"] != tc.deniedBy) {
			t.Errorf("explain %s %s/%s: %v", tc.alias, tc.server, tc.tool, r)
		}
		if len(r["chain"].([]any)) < 6 {
			t.Errorf("explain chain too short: %v", r["chain"])
		}
	}
	// A key may explain itself, not others.
	must(t, g.as(t, key1, "GET", "/v1/mcp/access/explain?server=alpha&tool=echo", nil), 200)
	if r := g.as(t, key1, "GET", "/v1/mcp/access/explain?key_alias=k2&server=alpha&tool=echo", nil); r.status != 403 {
		t.Errorf("key1 explains key2: got %d, want 403", r.status)
	}

	// The toolset route narrows to the toolset; a toolset not granted is refused.
	c3 := dialMCP(t, g.url+"/toolset/echoes/mcp", false, map[string]string{"Authorization": "Bearer " + key2})
	if diff := cmp.Diff([]string{"alpha-echo", "beta-echo"}, toolNamesOf(t, c3)); diff != "" {
		t.Errorf("key2 on /toolset/echoes/mcp (-want +got):\n%s", diff)
	}
	if callRefused(t, c3, "alpha-add") == "" {
		t.Errorf("key2 called alpha-add through the toolset route")
	}
	if st := initStatus(t, g.url+"/toolset/echoes/mcp", key1); st != http.StatusForbidden {
		t.Errorf("key1 on a toolset it was not granted: got %d, want 403", st)
	}
	if st := initStatus(t, g.url+"/toolset/nope/mcp", key2); st != http.StatusForbidden {
		t.Errorf("unknown toolset: got %d, want 403", st)
	}

	// A key's grants change at once when it is updated.
	must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": k1["token"], "object_permission": map[string]any{"mcp_servers": []string{"beta"}}}), 200)
	c1b := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key1})
	if diff := cmp.Diff([]string{"beta-echo"}, toolNamesOf(t, c1b)); diff != "" {
		t.Errorf("key1 after update (-want +got):\n%s", diff)
	}
	// And toolsets too.
	must(t, g.admin(t, "PUT", "/v1/mcp/toolset", map[string]any{"toolset_id": tsID, "tools": []map[string]any{{"server_id": "beta", "tool_name": "echo"}}}), 200)
	c2b := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key2})
	if diff := cmp.Diff([]string{"alpha-add", "beta-echo"}, toolNamesOf(t, c2b)); diff != "" {
		t.Errorf("key2 after toolset update (-want +got):\n%s", diff)
	}
	list := g.as(t, key2, "GET", "/v1/mcp/toolset", nil)
	if list.status != 200 || !strings.Contains(string(list.body), tsID) {
		t.Errorf("key2 lists its toolsets: %d %s", list.status, list.body)
	}
	if list := g.as(t, key1, "GET", "/v1/mcp/toolset", nil); strings.Contains(string(list.body), tsID) {
		t.Errorf("key1 sees a toolset it was not granted: %s", list.body)
	}
	must(t, g.admin(t, "DELETE", "/v1/mcp/toolset/"+tsID, nil), 200)
	c2c := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key2})
	if diff := cmp.Diff([]string{"alpha-add"}, toolNamesOf(t, c2c)); diff != "" {
		t.Errorf("key2 after toolset delete (-want +got):\n%s", diff)
	}
}

// callRefused calls name and returns the refusal (an error or an error result), or "" when
// the call succeeded.
func callRefused(t testing.TB, c *client.Client, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err.Error()
	}
	if res.IsError {
		if len(res.Content) > 0 {
			if tc, ok := res.Content[0].(mcp.TextContent); ok {
				return tc.Text
			}
		}
		return "error result"
	}
	return ""
}

// initStatus sends an initialize to url with key and returns the HTTP status.
func initStatus(t testing.TB, url, key string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
