package federation

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestFederatedName(t *testing.T) {
	long := strings.Repeat("x", 70)
	tests := []struct {
		server, tool, want string
	}{
		{"github", "create_issue", "github-create_issue"},
		{"a", "b-c", "a-b-c"},
		{"a-b", "c", "a_b-c_" + hash8("a-b", "c")},
		{"srv", "weird.name/ü", "srv-weird_name___" + hash8("srv", "weird.name/ü")},
		{"srv", long, ("srv-" + long)[:55] + "_" + hash8("srv", long)},
		{"srv", "", "srv-__" + hash8("srv", "")},
	}
	for _, tc := range tests {
		got := federatedName(tc.server, tc.tool)
		if got != tc.want {
			t.Errorf("federatedName(%q, %q) = %q, want %q", tc.server, tc.tool, got, tc.want)
		}
		if !validName(got) {
			t.Errorf("federatedName(%q, %q) = %q does not match the charset", tc.server, tc.tool, got)
		}
	}
	// Different pairs that sanitize alike stay apart.
	if federatedName("a-b", "c") == federatedName("a_b", "c") || federatedName("s", "x.y") == federatedName("s", "x_y") {
		t.Error("sanitized collision")
	}
	if a, b := federatedName("s", long+"1"), federatedName("s", long+"2"); a == b || len(a) != 64 {
		t.Errorf("long names %q, %q: want distinct, 64 chars", a, b)
	}
}

func hash8(server, tool string) string {
	n := federatedName(server, tool)
	return n[len(n)-8:]
}

// A server's names do not depend on how many other servers are registered.
func TestNamesStableAcrossRegistrySize(t *testing.T) {
	list := func(n int) []string {
		u := newFake()
		var servers []Server
		for i := range n {
			name := fmt.Sprintf("srv%02d", i)
			u.setTools(name, "echo", "a.b", strings.Repeat("t", 70))
			servers = append(servers, Server{Name: name})
		}
		f, _ := newTestFederation(t, u, Config{}, servers...)
		tools, missing, err := f.ListTools(context.Background(), nil)
		if err != nil || len(missing) > 0 {
			t.Fatal(err, missing)
		}
		var names []string
		for _, tool := range tools {
			if tool.Server == "srv00" {
				names = append(names, tool.Tool.Name)
			}
		}
		return names
	}
	one, fifty := list(1), list(50)
	if strings.Join(one, ",") != strings.Join(fifty, ",") || len(one) != 3 {
		t.Errorf("names with 1 server %v, with 50 %v", one, fifty)
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
		want route
	}{
		{"/mcp", true, route{kind: routeMCP}},
		{"/mcp/", true, route{kind: routeMCP}},
		{"/mcp/github", true, route{kind: routeMCP, servers: []string{"github"}, single: true}},
		{"/github/mcp", true, route{kind: routeMCP, servers: []string{"github"}, single: true}},
		{"/github/mcp/", true, route{kind: routeMCP, servers: []string{"github"}, single: true}},
		{"/mcp/a,b,a", true, route{kind: routeMCP, servers: []string{"a", "b"}}},
		{"/mcp/a,", true, route{kind: routeMCP, servers: []string{"a"}}},
		{"/mcp/sse", true, route{kind: routeSSE}},
		{"/mcp/sse/messages", true, route{kind: routeSSEMessages}},
		{"/mcp/mcp", true, route{kind: routeMCP, servers: []string{"mcp"}, single: true}},
		{"/mcp/,", false, route{}},
		{"/mcp/a/b", false, route{}},
		{"/a/b/mcp", false, route{}},
		{"/", false, route{}},
		{"/mcpx", false, route{}},
		{"//mcp", false, route{}},
	}
	for _, tc := range tests {
		got, ok := parseRoute(tc.path)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/mcp", "/mcp/a,b", "/a/mcp", "/mcp/sse/messages", "/mcp/ä,,", "/mcp/a%2Cb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, ok := parseRoute(path)
		if !ok {
			return
		}
		if rt.single && len(rt.servers) != 1 {
			t.Fatalf("%q: single route with %v", path, rt.servers)
		}
		for _, s := range rt.servers {
			if !validServerName(s) {
				t.Fatalf("%q: invalid server %q", path, s)
			}
		}
	})
}

func FuzzFederatedName(f *testing.F) {
	f.Add("github", "create_issue")
	f.Add("a-b", "c.d/é")
	f.Add("", strings.Repeat("z", 100))
	f.Fuzz(func(t *testing.T, server, tool string) {
		n := federatedName(server, tool)
		if !validName(n) {
			t.Fatalf("federatedName(%q, %q) = %q", server, tool, n)
		}
		if n != federatedName(server, tool) {
			t.Fatal("not deterministic")
		}
		s, orig, ok := splitFederatedURI(federatedURI(server, tool))
		if !strings.Contains(server, "/") && server != "" && (!ok || s != server || orig != tool) {
			t.Fatalf("URI round trip of %q, %q = %q, %q, %v", server, tool, s, orig, ok)
		}
	})
}
