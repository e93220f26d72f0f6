package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/store"
)

// TestAuthorizerMatchesExplain checks, over a matrix of keys (key x team x org grants, a
// toolset, blocked tools) x servers x tools x network, that the Authorizer federation uses
// for tools/list and tools/call gives the verdict the explain route reports.
func TestAuthorizerMatchesExplain(t *testing.T) {
	g := newIdentityGateway(t)
	ctx := context.Background()
	ts := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "t2s",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "t2"}, {"server_id": "srv-intra", "tool_name": "t2"}}}), 200)
	tsID := ts["toolset_id"].(string)
	must(t, g.admin(t, "POST", "/organization/new", map[string]any{"organization_id": "o-alpha-beta", "object_permission": map[string]any{"mcp_servers": []string{"alpha", "beta", "intra"}}}), 200)
	must(t, g.admin(t, "POST", "/organization/new", map[string]any{"organization_id": "o-block", "object_permission": map[string]any{"blocked_tools": []string{"alpha-t1"}}}), 200)
	teams := map[string]map[string]any{
		"":         nil,
		"t-empty":  {},
		"t-alpha":  {"object_permission": map[string]any{"mcp_servers": []string{"alpha"}}},
		"t-dev":    {"object_permission": map[string]any{"mcp_access_groups": []string{"dev"}}, "organization_id": "o-alpha-beta"},
		"t-tools":  {"object_permission": map[string]any{"mcp_tool_permissions": map[string]any{"srv-alpha": []string{"t1"}}}, "organization_id": "o-block"},
		"t-tsets":  {"object_permission": map[string]any{"mcp_toolsets": []string{tsID}}},
		"t-blockd": {"object_permission": map[string]any{"mcp_servers": []string{"beta", "intra"}, "blocked_tools": []string{"t2"}}},
	}
	for id, body := range teams {
		if id == "" {
			continue
		}
		b := map[string]any{"team_id": id}
		for k, v := range body {
			b[k] = v
		}
		must(t, g.admin(t, "POST", "/team/new", b), 200)
	}
	keyPerms := []map[string]any{
		nil,
		{},
		{"mcp_servers": []string{"alpha"}},
		{"mcp_servers": []string{"alpha", "beta", "intra"}},
		{"mcp_access_groups": []string{"dev"}},
		{"mcp_toolsets": []string{tsID}},
		{"mcp_tool_permissions": map[string]any{"beta": []string{"t2"}}},
		{"mcp_servers": []string{"beta"}, "blocked_tools": []string{"beta-t1"}},
	}
	id := g.s.identityOf()
	n := 0
	for team := range teams {
		for i, perm := range keyPerms {
			body := map[string]any{"key_alias": fmt.Sprintf("%s-%d", team, i)}
			if team != "" {
				body["team_id"] = team
			}
			if perm != nil {
				body["object_permission"] = perm
			}
			k := must(t, g.admin(t, "POST", "/key/generate", body), 200)
			p, err := g.s.keyPrincipal(ctx, hashKey(k["key"].(string)))
			if err != nil {
				t.Fatal(err)
			}
			for _, internal := range []bool{false, true} {
				pctx := withCallerInfo(WithPrincipal(ctx, p), callerInfo{internal: internal})
				for _, srv := range identityServers {
					for _, tool := range []string{"", "t1", "t2"} {
						n++
						var got bool
						if tool == "" {
							got = id.AllowServer(pctx, srv.Name)
						} else {
							got = id.AllowTool(pctx, srv.Name, tool)
						}
						q := fmt.Sprintf("/v1/mcp/access/explain?key_id=%s&server=%s&tool=%s&internal=%v", k["token"], srv.Name, tool, internal)
						ex := must(t, g.admin(t, "GET", q, nil), 200)
						if ex["allowed"] != got {
							t.Errorf("team %q key %v on %s/%q internal=%v: authorizer %v, explain %v (%v)", team, perm, srv.Name, tool, internal, got, ex["allowed"], ex["chain"])
						}
					}
				}
			}
		}
	}
	t.Logf("%d verdicts compared", n)
}

func TestToolsetHeaderAndNetwork(t *testing.T) {
	g := newIdentityGateway(t)
	ts := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "a1",
		"tools": []map[string]any{{"server_id": "alpha", "tool_name": "t1"}, {"server_id": "intra", "tool_name": "t1"}}}), 200)
	other := must(t, g.admin(t, "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "b1",
		"tools": []map[string]any{{"server_id": "beta", "tool_name": "t1"}}}), 200)
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"object_permission": map[string]any{
		"mcp_servers": []string{"alpha", "beta", "intra"}, "mcp_toolsets": []string{ts["toolset_id"].(string)}}}), 200)
	p, err := g.s.keyPrincipal(context.Background(), hashKey(k["key"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	id := g.s.identityOf()
	req := func(remote, toolset, xff string) *http.Request {
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.RemoteAddr = remote
		if toolset != "" {
			r.Header.Set(toolsetHeader, toolset)
		}
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return r.WithContext(WithPrincipal(r.Context(), p))
	}

	// No narrowing: everything granted.
	r, err := g.s.identityRequest(req("127.0.0.1:1", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !id.AllowTool(r.Context(), "beta", "t9") || !id.AllowTool(r.Context(), "intra", "t9") {
		t.Errorf("internal caller without narrowing lost a granted tool")
	}
	// Granted toolset, by ID and by name: narrows.
	for _, name := range []string{ts["toolset_id"].(string), "a1"} {
		r, err = g.s.identityRequest(req("127.0.0.1:1", name, ""))
		if err != nil {
			t.Fatalf("granted toolset %s: %v", name, err)
		}
		if !id.AllowTool(r.Context(), "alpha", "t1") || id.AllowTool(r.Context(), "alpha", "t2") || id.AllowServer(r.Context(), "beta") {
			t.Errorf("toolset %s did not narrow", name)
		}
	}
	// A toolset not granted, or unknown: 403, never trusted.
	for _, name := range []string{other["toolset_id"].(string), "b1", "nope"} {
		_, err = g.s.identityRequest(req("127.0.0.1:1", name, ""))
		var he *Error
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Errorf("toolset %s not granted: got %v, want 403", name, err)
		}
	}
	// Network: an external peer does not reach the internal-only server, and
	// X-Forwarded-For is not believed by default.
	r, err = g.s.identityRequest(req("203.0.113.5:1", "", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if id.AllowServer(r.Context(), "intra") || id.AllowTool(r.Context(), "intra", "t1") {
		t.Errorf("external caller reaches the internal-only server")
	}
	if !id.AllowTool(r.Context(), "alpha", "t1") {
		t.Errorf("external caller lost a public server")
	}
	// Forwarding trusted from 10/8 only: a trusted proxy's X-Forwarded-For counts,
	// anyone else's does not; enabled with no ranges, everyone is external.
	g.s.setClientNetwork(true, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		remote, xff string
		internal    bool
	}{
		{"10.1.1.1:1", "192.168.0.7", true},
		{"10.1.1.1:1", "203.0.113.5", false},
		{"203.0.113.5:1", "10.9.9.9", false},
		{"127.0.0.1:1", "", true},
	} {
		r, err := g.s.identityRequest(req(tc.remote, "", tc.xff))
		if err != nil {
			t.Fatal(err)
		}
		if got := id.AllowServer(r.Context(), "intra"); got != tc.internal {
			t.Errorf("peer %s xff %q: internal-only server visible = %v, want %v", tc.remote, tc.xff, got, tc.internal)
		}
	}
	g.s.setClientNetwork(true, nil)
	if r, _ := g.s.identityRequest(req("127.0.0.1:1", "", "")); id.AllowServer(r.Context(), "intra") {
		t.Errorf("forwarding enabled with no trusted ranges: a loopback caller counts as internal")
	}
	g.s.setClientNetwork(false, nil)

	// Without the request information (not wired), callers count as external.
	bare := WithPrincipal(context.Background(), p)
	if id.AllowServer(bare, "intra") {
		t.Errorf("a context without caller information counts as internal")
	}
	// No principal: nothing.
	if id.AllowServer(context.Background(), "alpha") {
		t.Errorf("no principal: allowed")
	}
}

// BenchmarkAdmissionDecision is admission of a cached key plus the permission decision,
// with 10,000 keys cached and 100 servers registered. It reports p50-ns.
func BenchmarkAdmissionDecision(b *testing.B) {
	g := newTestGateway(b, nil)
	const nKeys, nServers = 10000, 100
	reg := &registry{byName: map[string]*store.MCPServer{}, byID: map[string]*store.MCPServer{}}
	for i := range nServers {
		s := &store.MCPServer{ID: fmt.Sprintf("id-%d", i), Name: fmt.Sprintf("srv%d", i), AccessGroups: []string{fmt.Sprintf("g%d", i%10)}, AvailableOnPublicInternet: true}
		reg.servers = append(reg.servers, s)
		reg.byName[s.Name], reg.byID[s.ID] = s, s
	}
	g.s.reg.Store(reg)
	team := &store.Team{ID: "team", Permission: store.ObjectPermission{MCPAccessGroups: []string{"g0", "g1", "g2"}}}
	hashes := make([]string, nKeys)
	for i := range nKeys {
		k := &store.Key{ID: fmt.Sprint(i), TeamID: "team", Permission: store.ObjectPermission{
			MCPServers: []string{fmt.Sprintf("srv%d", i%nServers), fmt.Sprintf("srv%d", (i+1)%nServers)}}}
		hashes[i] = hashKey(fmt.Sprintf("sk-%064d", i))
		g.s.keys.Add(hashes[i], &Principal{Kind: KindKey, Key: k, Team: team, Subject: "key:" + k.ID})
	}
	id := g.s.identityOf()
	ctx := context.Background()
	samples := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		p, err := g.s.keyPrincipal(ctx, hashes[(i*7919)%nKeys])
		if err != nil {
			b.Fatal(err)
		}
		pctx := withCallerInfo(WithPrincipal(ctx, p), callerInfo{internal: true})
		_ = id.AllowTool(pctx, fmt.Sprintf("srv%d", i%nServers), "tool")
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	if len(samples) > 0 {
		b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	}
}

// BenchmarkToolsListAuthorizer is the authorizer's share of one tools/list over 50
// servers of 10 tools each for a caller narrowed to a 10-tool toolset: 50 AllowServer and
// 500 AllowTool calls. It reports p50-ns per list.
func BenchmarkToolsListAuthorizer(b *testing.B) {
	g := newTestGateway(b, nil)
	reg := &registry{byName: map[string]*store.MCPServer{}, byID: map[string]*store.MCPServer{}}
	var refs []store.ToolRef
	for i := range 50 {
		s := &store.MCPServer{ID: fmt.Sprintf("id-%d", i), Name: fmt.Sprintf("srv%d", i), AvailableOnPublicInternet: true}
		reg.servers = append(reg.servers, s)
		reg.byName[s.Name], reg.byID[s.ID] = s, s
		if i%5 == 0 {
			refs = append(refs, store.ToolRef{ServerID: s.ID, ToolName: fmt.Sprintf("tool%d", i%10)})
		}
	}
	g.s.reg.Store(reg)
	ts := &store.Toolset{Name: "ten", Tools: refs}
	if err := g.db.CreateToolset(context.Background(), ts); err != nil {
		b.Fatal(err)
	}
	p := &Principal{Kind: KindKey, Key: &store.Key{ID: "k", Permission: store.ObjectPermission{MCPToolsets: []string{ts.ID}}}, Subject: "key:k"}
	ctx := withCallerInfo(WithPrincipal(context.Background(), p), callerInfo{toolset: ts.ID})
	id := g.s.identityOf()
	tools := make([]string, 10)
	for j := range tools {
		tools[j] = fmt.Sprintf("tool%d", j)
	}
	samples := make([]time.Duration, 0, 1<<14)
	for b.Loop() {
		start := time.Now()
		n := 0
		for _, s := range reg.servers {
			if !id.AllowServer(ctx, s.Name) {
				continue
			}
			for _, tool := range tools {
				if id.AllowTool(ctx, s.Name, tool) {
					n++
				}
			}
		}
		if n != 10 {
			b.Fatalf("visible tools = %d, want 10", n)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	if len(samples) > 0 {
		b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	}
}

// BenchmarkToolsListE2E is one tools/list through the real /mcp endpoint for a key
// narrowed to a 10-tool toolset over 50 upstreams of 10 tools each (lists cached by
// federation). It reports p50-ns.
func BenchmarkToolsListE2E(b *testing.B) {
	var servers []*store.MCPServer
	var refs []store.ToolRef
	tools := make([]string, 10)
	for j := range tools {
		tools[j] = fmt.Sprintf("tool%d", j)
	}
	for i := range 50 {
		name := fmt.Sprintf("srv%d", i)
		servers = append(servers, &store.MCPServer{Name: name, URL: newUpstream(b, name, tools...), AvailableOnPublicInternet: true})
		if i%5 == 0 {
			refs = append(refs, store.ToolRef{ServerID: name, ToolName: tools[i%10]})
		}
	}
	g := newTestGateway(b, func(c *Config) { c.MCPServers = servers })
	waitFor(b, "50 upstreams healthy", func() bool {
		r := g.admin(b, "GET", "/v1/mcp/server/health", nil)
		return strings.Count(string(r.body), `"status":"healthy"`) == 50
	})
	ts := &store.Toolset{Name: "ten", Tools: refs}
	if err := g.db.CreateToolset(context.Background(), ts); err != nil {
		b.Fatal(err)
	}
	k := must(b, g.admin(b, "POST", "/key/generate", map[string]any{"object_permission": map[string]any{"mcp_toolsets": []string{ts.ID}}}), 200)
	c := dialMCP(b, g.url+"/toolset/ten/mcp", false, map[string]string{"Authorization": "Bearer " + k["key"].(string)})
	ctx := context.Background()
	if res, err := c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil || len(res.Tools) != 10 {
		b.Fatalf("tools/list: %v, %d tools", err, len(res.Tools))
	}
	samples := make([]time.Duration, 0, 1<<14)
	for b.Loop() {
		start := time.Now()
		if _, err := c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	if len(samples) > 0 {
		b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	}
}
