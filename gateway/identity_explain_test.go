package gateway

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/store"
)

// TestExplainMatchesMCP: for keys with grants on the key, team and org levels, a toolset,
// blocked tools, allowed_tools, allow_all_keys and an internal-only server, from an
// internal and an external address, the explain route's verdict on every upstream tool
// equals what a real MCP client sees: listed by tools/list on /mcp exactly when explain
// allows it, and tools/call succeeds exactly then.
func TestExplainMatchesMCP(t *testing.T) {
	upstreams := map[string][]string{"alpha": {"t1", "t2"}, "beta": {"t1", "t2"}, "intra": {"t1", "t2"}, "open": {"t1"}, "restricted": {"t1", "t2"}}
	g := newTestGateway(t, func(c *Config) {
		c.TrustForwardedFor = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		for _, name := range []string{"alpha", "beta", "intra", "open", "restricted"} {
			srv := &store.MCPServer{Name: name, URL: newUpstream(t, name, upstreams[name]...), AvailableOnPublicInternet: true}
			switch name {
			case "alpha":
				srv.AccessGroups = []string{"dev"}
			case "intra":
				srv.AccessGroups, srv.AvailableOnPublicInternet = []string{"dev"}, false
			case "open":
				srv.AllowAllKeys = true
			case "restricted":
				srv.AllowedTools = []string{"t1"}
			}
			c.MCPServers = append(c.MCPServers, srv)
		}
	})
	waitFor(t, "five upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 5
	})
	ts := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "mixed",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "t1"}, {"server_id": "beta", "tool_name": "t2"}, {"server_id": "intra", "tool_name": "t1"}}}), 200)
	tsID := ts["toolset_id"].(string)
	must(t, g.admin(t, "POST", "/organization/new", map[string]any{"organization_id": "o1", "object_permission": map[string]any{
		"mcp_servers": []string{"alpha", "beta", "intra", "restricted"}, "blocked_tools": []string{"beta-t2"}}}), 200)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "devs", "organization_id": "o1",
		"object_permission": map[string]any{"mcp_access_groups": []string{"dev"}}}), 200)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "betas",
		"object_permission": map[string]any{"mcp_tool_permissions": map[string]any{"beta": []string{"t1", "t2"}}, "mcp_toolsets": []string{tsID}}}), 200)

	keys := []struct {
		name     string
		body     map[string]any
		toolsets []string // requested toolsets to try besides none
	}{
		{"no grants", map[string]any{}, nil},
		{"team devs, inherits", map[string]any{"team_id": "devs"}, nil},
		{"team devs, key narrows to alpha", map[string]any{"team_id": "devs", "object_permission": map[string]any{"mcp_servers": []string{"alpha", "beta"}}}, nil},
		{"team betas, inherits", map[string]any{"team_id": "betas"}, []string{tsID}},
		{"team betas, key takes the toolset", map[string]any{"team_id": "betas", "object_permission": map[string]any{"mcp_toolsets": []string{"mixed"}}}, []string{"mixed"}},
		{"org only, key blocks t1", map[string]any{"organization_id": "o1", "object_permission": map[string]any{
			"mcp_servers": []string{"restricted", "beta", "intra"}, "blocked_tools": []string{"t1"}}}, nil},
	}
	type network struct {
		name     string
		xff      string
		internal bool
	}
	networks := []network{{"internal", "", true}, {"external", "203.0.113.9", false}}
	checked, allowed := 0, 0
	for _, k := range keys {
		created := must(t, g.admin(t, "POST", "/key/generate", k.body), 200)
		secret, keyID := created["key"].(string), created["token"].(string)
		for _, toolset := range append([]string{""}, k.toolsets...) {
			for _, nw := range networks {
				label := fmt.Sprintf("%s, toolset %q, %s", k.name, toolset, nw.name)
				h := map[string]string{"Authorization": "Bearer " + secret}
				if nw.xff != "" {
					h["X-Forwarded-For"] = nw.xff
				}
				if toolset != "" {
					h["x-mcp-toolset-id"] = toolset
				}
				c := dialMCP(t, g.url+"/mcp", false, h)
				listed := toolNamesOf(t, c)
				for server, tools := range upstreams {
					for _, tool := range tools {
						q := url.Values{"key_id": {keyID}, "server": {server}, "tool": {tool}, "internal": {fmt.Sprint(nw.internal)}}
						if toolset != "" {
							q.Set("toolset", toolset)
						}
						ex := must(t, g.admin(t, "GET", "/v1/mcp/access/explain?"+q.Encode(), nil), 200)
						want := ex["allowed"] == true
						name := server + "-" + tool
						if got := slices.Contains(listed, name); got != want {
							t.Errorf("%s: %s listed=%v, explain allowed=%v (denied by %v)", label, name, got, want, ex["denied_by"])
						}
						if got := callRefused(t, c, name) == ""; got != want {
							t.Errorf("%s: %s call succeeded=%v, explain allowed=%v (denied by %v)", label, name, got, want, ex["denied_by"])
						}
						checked++
						if want {
							allowed++
						}
					}
				}
			}
		}
	}
	// Both verdicts occur often enough for the comparison to mean something.
	if allowed < 10 || checked-allowed < 10 {
		t.Errorf("%d of %d verdicts allowed: the matrix does not exercise both outcomes", allowed, checked)
	}
	t.Logf("%d verdicts compared with tools/list and tools/call (%d allowed)", checked, allowed)
}

// TestMasterKeyFollowsExplain: the master key is an admin like a proxy_admin user's key: it
// passes the grant levels, but a requested toolset narrows it, a server's allowed_tools
// bind it and an internal-only server is hidden from it outside, as explain says.
func TestMasterKeyFollowsExplain(t *testing.T) {
	alpha := newUpstream(t, "alpha", "t1", "t2", "t3") // t3 is outside allowed_tools
	intra := newUpstream(t, "intra", "t1")
	g := newTestGateway(t, func(c *Config) {
		c.TrustForwardedFor = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		c.MCPServers = []*store.MCPServer{
			{Name: "alpha", URL: alpha, AvailableOnPublicInternet: true, AllowedTools: []string{"t1", "t2"}},
			{Name: "intra", URL: intra},
		}
	})
	waitFor(t, "two upstreams healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 2
	})
	must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "a1",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "t1"}}}), 200)
	for _, tc := range []struct {
		name, toolset, xff string
		want               []string
	}{
		{"internal: allowed_tools bind", "", "", []string{"alpha-t1", "alpha-t2", "intra-t1"}},
		{"toolset header narrows", "a1", "", []string{"alpha-t1"}},
		{"external: internal-only server hidden", "", "203.0.113.9", []string{"alpha-t1", "alpha-t2"}},
	} {
		h := map[string]string{"Authorization": "Bearer " + testMasterKey}
		if tc.toolset != "" {
			h["x-mcp-toolset-id"] = tc.toolset
		}
		if tc.xff != "" {
			h["X-Forwarded-For"] = tc.xff
		}
		c := dialMCP(t, g.url+"/mcp", false, h)
		if got := toolNamesOf(t, c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		for _, name := range []string{"alpha-t2", "alpha-t3", "intra-t1"} {
			server, tool, _ := strings.Cut(name, "-")
			q := url.Values{"server": {server}, "tool": {tool}, "internal": {fmt.Sprint(tc.xff == "")}}
			if tc.toolset != "" {
				q.Set("toolset", tc.toolset)
			}
			ex := must(t, g.admin(t, "GET", "/v1/mcp/access/explain?"+q.Encode(), nil), 200)
			if listed := slices.Contains(tc.want, name); ex["allowed"] != listed {
				t.Errorf("%s: explain %s allowed=%v, listed=%v", tc.name, name, ex["allowed"], listed)
			}
			if ok := callRefused(t, c, name) == ""; ok != slices.Contains(tc.want, name) {
				t.Errorf("%s: call %s succeeded=%v", tc.name, name, ok)
			}
		}
	}
}
