package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/upstream"
)

func listTools(t *testing.T, c *client.Client) *mcp.ListToolsResult {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	return res
}

func callTool(c *client.Client, name string) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = map[string]any{"message": "hi"}
	return c.CallTool(context.Background(), req)
}

func twoServers() (*fakeUpstreams, []Server) {
	u := newFake()
	u.setTools("alpha", "echo", "add")
	u.setTools("beta", "echo", "weird.name/with spaces")
	return u, []Server{{ID: "id-a", Name: "alpha"}, {ID: "id-b", Name: "beta"}}
}

func TestUnionListAndCall(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			c := dial(t, ts.URL+"/mcp", e, "p1", nil)
			got := toolNames(listTools(t, c).Tools)
			want := []string{"alpha-echo", "alpha-add", "beta-echo", federatedName("beta", "weird.name/with spaces")}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("tools (-want +got):\n%s", diff)
			}
			for _, tool := range listTools(t, c).Tools {
				if !validName(tool.Name) {
					t.Errorf("name %q does not match ^[A-Za-z0-9_-]{1,64}$", tool.Name)
				}
				if tool.Meta == nil || tool.Meta.AdditionalFields[MetaServer] == nil {
					t.Errorf("tool %q has no server in _meta", tool.Name)
				}
			}
			res, err := callTool(c, "beta-echo")
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Content[0].(mcp.TextContent).Text; got != "beta/echo" {
				t.Errorf("call routed to %q, want beta/echo", got)
			}
			res, err = callTool(c, federatedName("beta", "weird.name/with spaces"))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Content[0].(mcp.TextContent).Text; got != "beta/weird.name/with spaces" {
				t.Errorf("call routed to %q", got)
			}
			sc, _ := res.StructuredContent.(map[string]any)
			if sc["server"] != "beta" {
				t.Errorf("structuredContent = %v, want passed through", res.StructuredContent)
			}
		})
	}
}

func TestSingleServerRoutes(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	for _, path := range []string{"/mcp/beta", "/beta/mcp"} {
		for _, e := range []era{modern, legacy} {
			t.Run(path+"/"+e.String(), func(t *testing.T) {
				c := dial(t, ts.URL+path, e, "p1", nil)
				got := toolNames(listTools(t, c).Tools)
				if diff := cmp.Diff([]string{"echo", "weird.name/with spaces"}, got); diff != "" {
					t.Fatalf("tools (-want +got):\n%s", diff)
				}
				for _, name := range []string{"echo", "beta-echo"} {
					res, err := callTool(c, name)
					if err != nil {
						t.Fatalf("call %s: %v", name, err)
					}
					if got := res.Content[0].(mcp.TextContent).Text; got != "beta/echo" {
						t.Errorf("call %s routed to %q", name, got)
					}
				}
				if _, err := callTool(c, "alpha-echo"); !errors.Is(err, mcp.ErrInvalidParams) {
					t.Errorf("call alpha-echo on beta route: err = %v, want -32602", err)
				}
			})
		}
	}
	t.Run("serverInfo", func(t *testing.T) {
		c := dial(t, ts.URL+"/mcp/beta", legacy, "p1", nil)
		_ = c
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = mcp.ProtocolVersion20251125
		res, err := c.Initialize(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if res.ServerInfo.Name != "beta" {
			t.Errorf("serverInfo.name = %q, want beta", res.ServerInfo.Name)
		}
	})
}

func TestMultiServerRouteAndHeader(t *testing.T) {
	u, servers := twoServers()
	u.setTools("gamma", "x")
	servers = append(servers, Server{Name: "gamma"})
	_, ts := newTestFederation(t, u, Config{}, servers...)

	c := dial(t, ts.URL+"/mcp/alpha,gamma", modern, "p1", nil)
	if diff := cmp.Diff([]string{"alpha-echo", "alpha-add", "gamma-x"}, toolNames(listTools(t, c).Tools)); diff != "" {
		t.Errorf("/mcp/alpha,gamma (-want +got):\n%s", diff)
	}
	if _, err := callTool(c, "beta-echo"); !errors.Is(err, mcp.ErrInvalidParams) {
		t.Errorf("beta-echo outside the route: err = %v, want -32602", err)
	}

	c = dial(t, ts.URL+"/mcp", modern, "p1", map[string]string{"x-mcp-servers": "gamma, beta"})
	if diff := cmp.Diff([]string{"beta-echo", federatedName("beta", "weird.name/with spaces"), "gamma-x"}, toolNames(listTools(t, c).Tools)); diff != "" {
		t.Errorf("x-mcp-servers (-want +got):\n%s", diff)
	}
	if _, err := callTool(c, "alpha-echo"); !errors.Is(err, mcp.ErrInvalidParams) {
		t.Errorf("alpha-echo narrowed away: err = %v, want -32602", err)
	}
}

func TestUnknownToolIsInvalidParams(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	c := dial(t, ts.URL+"/mcp", modern, "p1", nil)
	_, err := callTool(c, "nope-nothing")
	if !errors.Is(err, mcp.ErrInvalidParams) || !strings.Contains(err.Error(), "nope-nothing") {
		t.Errorf("err = %v, want -32602 naming the tool", err)
	}
}

func TestHangingUpstream(t *testing.T) {
	u, servers := twoServers()
	u.hang["beta"] = true
	// The margins are wide so a loaded machine cannot fail the test: the first list must
	// end at the list timeout, not hang; the second must not wait for it again.
	const listTimeout = 1500 * time.Millisecond
	_, ts := newTestFederation(t, u, Config{ListTimeout: listTimeout}, servers...)
	c := dial(t, ts.URL+"/mcp", modern, "p1", nil)
	start := time.Now()
	res := listTools(t, c)
	if d := time.Since(start); d > 2*listTimeout {
		t.Errorf("list took %v with a hanging upstream", d)
	}
	if diff := cmp.Diff([]string{"alpha-echo", "alpha-add"}, toolNames(res.Tools)); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	if res.Meta == nil || fmt.Sprint(res.Meta.AdditionalFields[MetaMissing]) != "[beta]" {
		t.Errorf("_meta = %+v, want beta missing", res.Meta)
	}
	// The second list does not wait for the dead upstream again.
	start = time.Now()
	listTools(t, c)
	if d := time.Since(start); d > listTimeout/2 {
		t.Errorf("second list took %v: it waited for the dead upstream again", d)
	}
}

// The cold list costs about the slowest upstream, not the sum.
func TestColdListIsParallel(t *testing.T) {
	u := newFake()
	var servers []Server
	for i := range 10 {
		name := fmt.Sprintf("s%d", i)
		u.setTools(name, "t")
		servers = append(servers, Server{Name: name})
	}
	slow := &slowUpstreams{fakeUpstreams: u, delay: 200 * time.Millisecond}
	f, err := New(Config{Upstreams: slow})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.reg.Store(&registry{byName: map[string]*serverState{}, byID: map[string]*serverState{}})
	reg := &registry{byName: map[string]*serverState{}, byID: map[string]*serverState{}}
	for _, s := range servers {
		st := newServerState(s, &serverLists{})
		reg.byName[s.Name] = st
		reg.order = append(reg.order, st)
	}
	f.reg.Store(reg) // registered without the SetServers prefetch
	start := time.Now()
	tools, missing, err := f.ListTools(context.Background(), nil)
	if err != nil || len(missing) > 0 || len(tools) != 10 {
		t.Fatalf("ListTools = %d tools, missing %v, err %v", len(tools), missing, err)
	}
	// One after another would take 2s; the margin absorbs a loaded machine.
	if d := time.Since(start); d > time.Second {
		t.Errorf("cold list over 10 upstreams of 200ms took %v, want ~200ms, not the sum", d)
	}
}

type slowUpstreams struct {
	*fakeUpstreams
	delay  time.Duration
	delays map[string]time.Duration // per server, instead of delay; read-only
}

func (s *slowUpstreams) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	d, ok := s.delays[server]
	if !ok {
		d = s.delay
	}
	time.Sleep(d)
	return s.fakeUpstreams.ListTools(ctx, server)
}

type denyAuthorizer struct{ tool, server string }

func (a denyAuthorizer) AllowServer(_ context.Context, server string) bool {
	return server != a.server
}
func (a denyAuthorizer) AllowTool(ctx context.Context, server, tool string) bool {
	return testPrincipal(ctx) != "restricted" || tool != a.tool
}

func TestAuthorizerFiltersListAndCall(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{Authorizer: denyAuthorizer{tool: "add", server: "gamma"}}, servers...)
	for _, path := range []string{"/mcp", "/mcp/alpha"} {
		name := map[string]string{"/mcp": "alpha-add", "/mcp/alpha": "add"}[path]
		free := dial(t, ts.URL+path, modern, "free", nil)
		if !slices.Contains(toolNames(listTools(t, free).Tools), name) {
			t.Errorf("%s: free caller does not see %s", path, name)
		}
		c := dial(t, ts.URL+path, legacy, "restricted", nil)
		if slices.Contains(toolNames(listTools(t, c).Tools), name) {
			t.Errorf("%s: restricted caller sees %s", path, name)
		}
		if _, err := callTool(c, name); !errors.Is(err, mcp.ErrInvalidParams) {
			t.Errorf("%s: restricted call %s: err = %v, want -32602", path, name, err)
		}
	}
	// REST goes through the same decision.
	f2, _ := newTestFederation(t, u, Config{Authorizer: denyAuthorizer{tool: "add"}}, servers...)
	ctx := context.WithValue(context.Background(), principalKey{}, "restricted")
	tools, _, _ := f2.ListTools(ctx, nil)
	for _, tool := range tools {
		if tool.Original == "add" {
			t.Errorf("REST list shows add to restricted caller")
		}
	}
	if _, err := f2.CallTool(ctx, "alpha-add", nil); !errors.Is(err, ErrUnknownTool) {
		t.Errorf("REST call: err = %v, want ErrUnknownTool", err)
	}
	if _, err := f2.CallServerTool(ctx, "id-a", "echo", nil); err != nil {
		t.Errorf("REST call by server id: %v", err)
	}
}

func TestAllowedToolsAndDisplayNames(t *testing.T) {
	u, _ := twoServers()
	_, ts := newTestFederation(t, u, Config{}, Server{Name: "alpha", AllowedTools: []string{"echo"},
		ToolNameToDisplayName: map[string]string{"echo": "say"}, ToolNameToDescription: map[string]string{"echo": "Says it."}})
	c := dial(t, ts.URL+"/mcp", modern, "p", nil)
	res := listTools(t, c)
	if diff := cmp.Diff([]string{"alpha-say"}, toolNames(res.Tools)); diff != "" {
		t.Fatalf("tools (-want +got):\n%s", diff)
	}
	if res.Tools[0].Description != "Says it." {
		t.Errorf("description = %q", res.Tools[0].Description)
	}
	if out, err := callTool(c, "alpha-say"); err != nil || out.Content[0].(mcp.TextContent).Text != "alpha/echo" {
		t.Errorf("call alpha-say = %v, %v", out, err)
	}
	if _, err := callTool(c, "alpha-add"); !errors.Is(err, mcp.ErrInvalidParams) {
		t.Errorf("call of a tool outside AllowedTools: err = %v", err)
	}
}

func TestProgressReachesCaller(t *testing.T) {
	u, servers := twoServers()
	u.call = func(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error) {
		var token any
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		for i := range 3 {
			obs.OnNotification(mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{
				Method: string(mcp.MethodNotificationProgress),
				Params: mcp.NotificationParams{AdditionalFields: map[string]any{"progressToken": token, "progress": float64(i * 50), "total": 100.0}},
			}})
			time.Sleep(10 * time.Millisecond)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("done")}}, nil
	}
	_, ts := newTestFederation(t, u, Config{}, servers...)
	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			c := dial(t, ts.URL+"/mcp", e, "p", nil)
			var mu sync.Mutex
			var got []any
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == string(mcp.MethodNotificationProgress) {
					mu.Lock()
					got = append(got, n.Params.AdditionalFields["progressToken"])
					mu.Unlock()
				}
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = "alpha-echo"
			req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1"}
			if _, err := c.CallTool(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			// mcp-go may drop the last notification (PR #969); at least two must arrive.
			if len(got) < 2 || got[0] != "tok-1" {
				t.Errorf("progress tokens = %v, want tok-1 x3", got)
			}
		})
	}
}

func TestSessionBoundToPrincipal(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	c := dial(t, ts.URL+"/mcp", legacy, "alice", nil)
	id := c.GetSessionId()
	if id == "" {
		t.Fatal("no session ID for a 2025-11-25 client")
	}
	post := func(principal, path string) int {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", id)
		req.Header.Set("Mcp-Protocol-Version", mcp.ProtocolVersion20251125)
		req.Header.Set("X-Test-Principal", principal)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("alice", "/mcp"); got != http.StatusOK {
		t.Errorf("owner: status %d, want 200", got)
	}
	if got := post("mallory", "/mcp"); got != http.StatusNotFound {
		t.Errorf("other principal: status %d, want 404", got)
	}
	if got := post("alice", "/mcp/alpha"); got != http.StatusNotFound {
		t.Errorf("other route: status %d, want 404", got)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(m, ts.URL+"/mcp", nil)
		req.Header.Set("Mcp-Session-Id", id)
		req.Header.Set("X-Test-Principal", "mallory")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s by other principal: status %d, want 404", m, resp.StatusCode)
		}
	}
	// Any replica with the same key accepts it; a different key does not.
	f2, err := New(Config{Upstreams: u, Principal: testPrincipal})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if _, err := f2.sessions.check(id, "alice\x00all"); err == nil {
		t.Error("session verified with another key")
	}
}

func TestHTTPErrors(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{MaxBodyBytes: 1024, AllowedOrigins: []string{"https://ok.example"}}, servers...)
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		contains                 string
	}{
		{"unknown server", "POST", "/mcp/nope", `{}`, nil, 404, `unknown MCP server \"nope\"`},
		{"unknown server suffix", "POST", "/nope/mcp", `{}`, nil, 404, `"type":"not_found"`},
		{"unknown in list", "POST", "/mcp/alpha,nope", `{}`, nil, 404, `nope`},
		{"unknown route", "GET", "/mcp/a/b/c", ``, nil, 404, `not_found`},
		{"bad origin", "POST", "/mcp", `{}`, map[string]string{"Origin": "https://evil.example"}, 403, `evil`},
		{"too large", "POST", "/mcp", strings.Repeat(" ", 2048), nil, 413, `request_too_large`},
		{"malformed", "POST", "/mcp", `{"jsonrpc":`, nil, 400, `-32700`},
		{"batch", "POST", "/mcp", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, nil, 400, `-32600`},
		{"no method", "POST", "/mcp", `{"jsonrpc":"2.0","id":1}`, nil, 400, `-32600`},
		{"wrong version", "POST", "/mcp", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, nil, 400, `-32600`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.contains) {
				t.Errorf("got %d %s, want %d containing %s", resp.StatusCode, b, tc.status, tc.contains)
			}
		})
	}
	for _, origin := range []string{"https://ok.example", ts.URL} {
		c := dial(t, ts.URL+"/mcp", modern, "p", map[string]string{"Origin": origin})
		listTools(t, c)
	}
}

func TestPromptsResourcesCompletions(t *testing.T) {
	u, servers := twoServers()
	u.prompts["alpha"] = []mcp.Prompt{mcp.NewPrompt("greet", mcp.WithArgument("who"))}
	u.resources["beta"] = []mcp.Resource{mcp.NewResource("test://static", "static")}
	_, ts := newTestFederation(t, u, Config{}, servers...)
	ctx := context.Background()
	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			c := dial(t, ts.URL+"/mcp", e, "p", nil)
			pl, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "alpha-greet" {
				t.Fatalf("prompts/list = %+v, %v", pl, err)
			}
			gp := mcp.GetPromptRequest{}
			gp.Params.Name = "alpha-greet"
			pr, err := c.GetPrompt(ctx, gp)
			if err != nil || pr.Description != "alpha/greet" {
				t.Errorf("prompts/get = %+v, %v", pr, err)
			}
			rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil || len(rl.Resources) != 1 || rl.Resources[0].URI != "toolgate://beta/test://static" {
				t.Fatalf("resources/list = %+v, %v", rl, err)
			}
			rr := mcp.ReadResourceRequest{}
			rr.Params.URI = rl.Resources[0].URI
			rd, err := c.ReadResource(ctx, rr)
			if err != nil {
				t.Fatal(err)
			}
			if tc := rd.Contents[0].(mcp.TextResourceContents); tc.URI != rr.Params.URI || tc.Text != "beta says hi" {
				t.Errorf("resources/read = %+v", tc)
			}
			tl, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			if err != nil || len(tl.ResourceTemplates) != 2 || tl.ResourceTemplates[0].URITemplate.Raw() != "toolgate://alpha/test://alpha/{id}" {
				t.Errorf("templates = %+v, %v", tl, err)
			}
			cr := mcp.CompleteRequest{}
			cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "alpha-greet"}
			cr.Params.Argument = mcp.CompleteArgument{Name: "who", Value: "a"}
			cres, err := c.Complete(ctx, cr)
			if err != nil || len(cres.Completion.Values) != 1 || cres.Completion.Values[0] != "alpha:greet" {
				t.Errorf("complete = %+v, %v", cres, err)
			}
		})
	}
	c := dial(t, ts.URL+"/mcp/beta", modern, "p", nil)
	rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || rl.Resources[0].URI != "test://static" {
		t.Fatalf("single-server resources = %+v, %v", rl, err)
	}
}

func TestListChangedRefreshes(t *testing.T) {
	u, servers := twoServers()
	f, ts := newTestFederation(t, u, Config{}, servers...)
	c := dial(t, ts.URL+"/mcp/alpha", legacy, "p", nil)
	if got := len(listTools(t, c).Tools); got != 2 {
		t.Fatalf("%d tools", got)
	}
	changed := make(chan struct{}, 4)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			changed <- struct{}{}
		}
	})
	u.setTools("alpha", "echo", "add", "new")
	f.ListChanged("alpha", string(mcp.MethodNotificationToolsListChanged))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if len(listTools(t, c).Tools) == 3 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("list not refreshed after ListChanged")
}

func TestSSE(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	c, err := client.NewSSEMCPClient(ts.URL+"/mcp/sse", client.WithHeaders(map[string]string{"X-Test-Principal": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := len(listTools(t, c).Tools); got != 4 {
		t.Errorf("%d tools over SSE", got)
	}
	if _, err := callTool(c, "alpha-echo"); err != nil {
		t.Error(err)
	}
}

func TestSSESessionBoundToPrincipal(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/mcp/sse", nil)
	req.Header.Set("X-Test-Principal", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	var endpoint string
	for endpoint == "" {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if rest, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(rest, "sessionId=") {
				endpoint = strings.TrimSpace(rest)
			}
		}
	}
	if !strings.HasPrefix(endpoint, sseMessagesPath+"?sessionId=tg1.") {
		t.Fatalf("endpoint event %q", endpoint)
	}
	post := func(principal string) int {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Test-Principal", principal)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("mallory"); got != http.StatusNotFound {
		t.Errorf("other principal: %d, want 404", got)
	}
	if got := post("alice"); got != http.StatusAccepted {
		t.Errorf("owner: %d, want 202", got)
	}
}

type budgetHook struct {
	mu    sync.Mutex
	calls []string
	done  int
	deny  string
}

func (h *budgetHook) BeforeToolCall(_ context.Context, server, tool string) (func(*mcp.CallToolResult, error), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, server+"/"+tool)
	if tool == h.deny {
		return nil, errors.New("budget exceeded")
	}
	return func(*mcp.CallToolResult, error) {
		h.mu.Lock()
		h.done++
		h.mu.Unlock()
	}, nil
}

func TestCallHook(t *testing.T) {
	u, servers := twoServers()
	hook := &budgetHook{deny: "add"}
	f, ts := newTestFederation(t, u, Config{CallHook: hook}, servers...)
	c := dial(t, ts.URL+"/mcp", modern, "p", nil)
	if _, err := callTool(c, "alpha-echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := callTool(c, "alpha-add"); err == nil || !strings.Contains(err.Error(), "budget exceeded") {
		t.Errorf("refused call: err = %v", err)
	}
	if _, err := f.CallTool(context.Background(), "beta-echo", nil); err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if diff := cmp.Diff([]string{"alpha/echo", "alpha/add", "beta/echo"}, hook.calls); diff != "" || hook.done != 2 {
		t.Errorf("hook calls (-want +got):\n%s done=%d", diff, hook.done)
	}
}

func TestCancellationReachesUpstream(t *testing.T) {
	u, servers := twoServers()
	cancelled := make(chan struct{}, 1)
	u.call = func(ctx context.Context, _ string, _ mcp.CallToolRequest, _ *upstream.Observer) (*mcp.CallToolResult, error) {
		select {
		case <-ctx.Done():
			cancelled <- struct{}{}
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
			return mcp.NewToolResultText("too late"), nil
		}
	}
	_, ts := newTestFederation(t, u, Config{}, servers...)
	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			c := dial(t, ts.URL+"/mcp", e, "p", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			req := mcp.CallToolRequest{}
			req.Params.Name = "alpha-echo"
			if _, err := c.CallTool(ctx, req); err == nil {
				t.Fatal("call did not fail")
			}
			select {
			case <-cancelled:
			case <-time.After(3 * time.Second):
				t.Error("upstream call context was not cancelled")
			}
		})
	}
}

// A 2026-07-28 client listening with subscriptions/listen hears about an
// upstream's list change, and a 2025-11-25 session hears it on its stream.
func TestListChangedReachesListeners(t *testing.T) {
	u, servers := twoServers()
	f, ts := newTestFederation(t, u, Config{}, servers...)
	got := make(chan era, 4)
	for _, e := range []era{modern, legacyListening} {
		c := dial(t, ts.URL+"/mcp", e, "p", nil)
		c.OnNotification(func(n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationToolsListChanged) {
				got <- e
			}
		})
		if e == modern {
			stop, err := c.ListenAsync(context.Background(), mcp.SubscriptionFilter{ToolsListChanged: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
		}
	}
	time.Sleep(200 * time.Millisecond) // let the listen stream open
	u.setTools("beta", "echo", "more")
	f.ListChanged("beta", string(mcp.MethodNotificationToolsListChanged))
	seen := map[era]bool{}
	deadline := time.After(3 * time.Second)
	for len(seen) < 2 {
		select {
		case e := <-got:
			seen[e] = true
		case <-deadline:
			t.Fatalf("list_changed reached %v, want both generations", seen)
		}
	}
}

// mcp-go's DNS-rebinding protection stays on: a loopback listener refuses a
// foreign Host.
func TestDNSRebindingProtection(t *testing.T) {
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
	req.Host = "evil.example.com"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Host on loopback: status %d, want 403", resp.StatusCode)
	}
}
