package federation

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// wireResponse is what a client sees of a response, Date aside.
type wireResponse struct {
	status   int
	header   http.Header
	length   int64
	transfer []string
	body     []byte
}

func (r wireResponse) String() string {
	return fmt.Sprintf("HTTP %d length %d %v\n%v\n%s", r.status, r.length, r.transfer, r.header, r.body)
}

// rawPost posts body to url with headers and returns the response.
func rawPost(t *testing.T, method, url string, headers map[string]string, body string) wireResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return wireResponse{status: resp.StatusCode, header: h, length: resp.ContentLength, transfer: resp.TransferEncoding, body: b}
}

// bothWays sends the same request with the fast tools/list on and off and
// fails unless the responses are identical. It returns the response.
func bothWays(t *testing.T, f *Federation, name, url string, headers map[string]string, body string) wireResponse {
	t.Helper()
	f.slowList.Store(false)
	fast := rawPost(t, http.MethodPost, url, headers, body)
	f.slowList.Store(true)
	slow := rawPost(t, http.MethodPost, url, headers, body)
	f.slowList.Store(false)
	if fast.status != slow.status || fast.length != slow.length || !slices.Equal(fast.transfer, slow.transfer) ||
		fmt.Sprint(fast.header) != fmt.Sprint(slow.header) || !bytes.Equal(fast.body, slow.body) {
		t.Errorf("%s: fast and mcp-go tools/list differ\nfast: %v\n\nmcp-go: %v", name, fast, slow)
	}
	if bytes.Contains(fast.body, []byte(f.dispatch)) {
		t.Errorf("%s: response shows the internal placeholder:\n%s", name, fast.body)
	}
	return fast
}

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`

func modernList(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{%s}}`, id, modernMeta)
}

var modernHeaders = map[string]string{"MCP-Protocol-Version": mcp.ProtocolVersion20260728, "Mcp-Method": "tools/list"}

// legacySession initializes a 2025-11-25 session on url as principal and
// returns its ID.
func legacySession(t *testing.T, url, principal string) string {
	t.Helper()
	h := map[string]string{"X-Test-Principal": principal}
	r := rawPost(t, http.MethodPost, url, h,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	id := r.header.Get(server.HeaderKeySessionID)
	if r.status != http.StatusOK || id == "" {
		t.Fatalf("initialize %s: %v", url, r)
	}
	h[server.HeaderKeySessionID] = id
	h["MCP-Protocol-Version"] = mcp.ProtocolVersion20251125
	if r := rawPost(t, http.MethodPost, url, h, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); r.status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %v", r)
	}
	return id
}

func legacyHeaders(principal, session string) map[string]string {
	return map[string]string{"X-Test-Principal": principal, server.HeaderKeySessionID: session,
		"MCP-Protocol-Version": mcp.ProtocolVersion20251125}
}

func with(h map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// fastListFixture registers alpha (tools with HTML, unicode, annotations and
// an output schema), beta, a per-caller crm that alice authorized and bob did
// not, a hanging dead server, and gamma, which the authorizer hides; the
// principal "restricted" may not see tools named add.
func fastListFixture(t *testing.T) (*Federation, string) {
	u := &perCallerUpstreams{fakeUpstreams: newFake(), tools: map[string][]string{}, fetchs: map[string]int{}}
	u.authorize("alice", "contacts", "add")
	u.setTools("beta", "echo", "weird.name/with spaces", "add")
	u.setTools("gamma", "secret")
	u.setTools("dead", "never")
	u.fakeUpstreams.mu.Lock()
	u.fakeUpstreams.hang["dead"] = true
	u.fakeUpstreams.tools["alpha"] = []mcp.Tool{
		mcp.NewTool("echo", mcp.WithDescription("Echoes <b>&</b> back — ünïcödé \u2028"), mcp.WithString("message", mcp.Required()),
			mcp.WithReadOnlyHintAnnotation(true), mcp.WithTitleAnnotation("Echo")),
		mcp.NewTool("add", mcp.WithNumber("a"), mcp.WithNumber("b"),
			mcp.WithOutputSchema[struct {
				Sum float64 `json:"sum"`
			}]()),
		{Name: "raw", Description: "raw schema", RawInputSchema: []byte(`{"type":"object","properties":{"x":{"type":"string","enum":["<a>","b&c"]}}}`),
			Meta: &mcp.Meta{AdditionalFields: map[string]any{"vendor/x": map[string]any{"z": 1, "a": []any{"<", 2.5}}}}},
	}
	u.fakeUpstreams.mu.Unlock()
	servers := []Server{
		{Name: "alpha", ToolNameToDisplayName: map[string]string{"raw": "raw_tool"}, ToolNameToDescription: map[string]string{"add": "Adds <numbers>"}},
		{Name: "beta", AllowedTools: []string{"echo", "weird.name/with spaces"}},
		{Name: "crm", PerCaller: true},
		{Name: "dead"},
		{Name: "gamma"},
	}
	// Registered without SetServers, whose list_changed notifications would
	// reach the sessions at a moment of their choosing and turn a response
	// into an SSE stream; lists are fetched on first use.
	f, err := New(Config{Upstreams: u, Principal: testPrincipal, ListTimeout: 100 * time.Millisecond,
		Authorizer: denyAuthorizer{tool: "add", server: "gamma"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := &registry{byName: map[string]*serverState{}, byID: map[string]*serverState{}}
	for _, s := range servers {
		st := newServerState(s, &serverLists{})
		reg.byName[s.Name] = st
		reg.order = append(reg.order, st)
	}
	f.reg.Store(reg)
	ts := httptest.NewServer(withPrincipal(f.Handler()))
	t.Cleanup(func() {
		ts.Close()
		_ = f.Close()
	})
	return f, ts.URL
}

// TestFastToolsListMatchesMCPGo sends the same tools/list requests with the
// fast encoding on and off: every route, both protocol generations, missing
// servers, per-caller servers awaiting authorization, x-mcp-servers, an
// authorizer, and requests mcp-go refuses. The responses must be identical.
func TestFastToolsListMatchesMCPGo(t *testing.T) {
	f, base := fastListFixture(t)
	routes := []string{"/mcp", "/mcp/alpha", "/alpha/mcp", "/mcp/alpha,crm", "/mcp/crm", "/mcp/beta,dead"}
	ok := 0
	for _, principal := range []string{"alice", "bob", "restricted"} {
		for _, route := range routes {
			url := base + route
			session := legacySession(t, url, principal)
			for _, narrowTo := range []string{"", "alpha,dead", "beta"} {
				extra := []string{}
				if narrowTo != "" {
					extra = []string{"X-Mcp-Servers", narrowTo}
				}
				name := fmt.Sprintf("%s %s x-mcp-servers=%q", principal, route, narrowTo)
				for _, r := range []wireResponse{
					bothWays(t, f, name+" 2025-11-25", url, with(legacyHeaders(principal, session), extra...),
						`{"jsonrpc":"2.0","id":"list-1","method":"tools/list"}`),
					bothWays(t, f, name+" 2026-07-28", url, with(modernHeaders, append(extra, "X-Test-Principal", principal)...),
						modernList(7)),
					bothWays(t, f, name+" 2025-11-25 with params", url, with(legacyHeaders(principal, session), extra...),
						`{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"progressToken":"x"}}}`),
				} {
					if r.status == http.StatusOK && bytes.Contains(r.body, []byte(`"tools":[{`)) {
						ok++
					}
				}
			}
		}
	}
	if ok < 60 {
		t.Errorf("only %d of the compared responses listed tools; the comparison is vacuous", ok)
	}

	// What the lists say, once: escaping, missing servers, authorization needed.
	alice := rawPost(t, http.MethodPost, base+"/mcp", with(modernHeaders, "X-Test-Principal", "alice"), modernList(1))
	for _, want := range []string{`Echoes \u003cb\u003e\u0026\u003c/b\u003e`, `"alpha-raw_tool"`, `"crm-contacts"`, `"toolgate/missing":["dead"]`} {
		if !bytes.Contains(alice.body, []byte(want)) {
			t.Errorf("alice's list lacks %s:\n%s", want, alice.body)
		}
	}
	bob := rawPost(t, http.MethodPost, base+"/mcp", with(modernHeaders, "X-Test-Principal", "bob"), modernList(1))
	if !bytes.Contains(bob.body, []byte(MetaAuthorizationRequired)) || bytes.Contains(bob.body, []byte("crm-contacts")) {
		t.Errorf("bob's list should name crm as awaiting authorization and omit its tools:\n%s", bob.body)
	}
	restricted := rawPost(t, http.MethodPost, base+"/mcp", with(modernHeaders, "X-Test-Principal", "restricted"), modernList(1))
	if bytes.Contains(restricted.body, []byte(`-add"`)) || bytes.Contains(restricted.body, []byte("gamma")) {
		t.Errorf("restricted caller sees add or gamma:\n%s", restricted.body)
	}

	// Requests mcp-go refuses, or answers in another way, stay its own.
	url := base + "/mcp"
	aliceSession := legacySession(t, url, "alice")
	bobSession := legacySession(t, url, "bob")
	routeSession := legacySession(t, base+"/mcp/alpha", "alice")
	deleted := legacySession(t, url, "alice")
	if r := rawPost(t, http.MethodDelete, url, legacyHeaders("alice", deleted), ""); r.status != http.StatusOK {
		t.Fatalf("DELETE session: %v", r)
	}
	list := `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`
	for _, c := range []struct {
		name    string
		headers map[string]string
		body    string
		status  int
	}{
		{"another principal's session", legacyHeaders("alice", bobSession), list, http.StatusNotFound},
		{"another route's session", legacyHeaders("alice", routeSession), list, http.StatusNotFound},
		{"terminated session", legacyHeaders("alice", deleted), list, http.StatusNotFound},
		{"no session", map[string]string{"X-Test-Principal": "alice", "MCP-Protocol-Version": mcp.ProtocolVersion20251125}, list, http.StatusNotFound},
		{"bogus session", legacyHeaders("alice", "tg1.bogus"), list, http.StatusNotFound},
		{"unknown protocol version", with(legacyHeaders("alice", aliceSession), "MCP-Protocol-Version", "1999-01-01"), list, http.StatusBadRequest},
		{"bad cursor", legacyHeaders("alice", aliceSession), `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"%%%"}}`, 0},
		{"notification", legacyHeaders("alice", aliceSession), `{"jsonrpc":"2.0","method":"tools/list"}`, http.StatusAccepted},
		{"wrong content type", with(legacyHeaders("alice", aliceSession), "Content-Type", "text/plain"), list, http.StatusBadRequest},
		{"modern without header", map[string]string{"X-Test-Principal": "alice"}, modernList(2), http.StatusBadRequest},
		{"modern Mcp-Method disagrees", with(modernHeaders, "X-Test-Principal", "alice", "Mcp-Method", "tools/call"), modernList(2), http.StatusBadRequest},
		{"modern header version disagrees", with(modernHeaders, "X-Test-Principal", "alice", "MCP-Protocol-Version", mcp.ProtocolVersion20251125), modernList(2), 0},
		{"modern Last-Event-ID", with(modernHeaders, "X-Test-Principal", "alice", "Last-Event-ID", "1"), modernList(2), http.StatusBadRequest},
		{"modern unknown version", with(modernHeaders, "X-Test-Principal", "alice", "MCP-Protocol-Version", "2099-01-01"),
			strings.Replace(modernList(2), "2026-07-28", "2099-01-01", 1), http.StatusBadRequest},
	} {
		r := bothWays(t, f, c.name, url, c.headers, c.body)
		if c.status != 0 && r.status != c.status {
			t.Errorf("%s: status %d, want %d\n%s", c.name, r.status, c.status, r.body)
		}
	}

	if f.fastLists.Load() == 0 {
		t.Errorf("no response was written with the fast encoding: the comparison is vacuous")
	}
}

// TestFastToolsListAfterNotifications: a 2025-era session with notifications
// queued gets its tools/list answer as an SSE stream (notifications first),
// the same with the fast encoding as without.
func TestFastToolsListAfterNotifications(t *testing.T) {
	f, base := fastListFixture(t)
	url := base + "/mcp/alpha,beta"
	session := legacySession(t, url, "alice")
	h := legacyHeaders("alice", session)
	f.slowList.Store(false)
	f.mcp.SendNotificationToAllClients(string(mcp.MethodNotificationToolsListChanged), nil)
	fast := rawPost(t, http.MethodPost, url, h, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)
	f.slowList.Store(true)
	f.mcp.SendNotificationToAllClients(string(mcp.MethodNotificationToolsListChanged), nil)
	slow := rawPost(t, http.MethodPost, url, h, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)
	if fmt.Sprint(fast) != fmt.Sprint(slow) {
		t.Errorf("fast and mcp-go differ\nfast: %v\n\nmcp-go: %v", fast, slow)
	}
	if ct := fast.header.Get("Content-Type"); ct != "text/event-stream" || !bytes.Contains(fast.body, []byte(`"alpha-echo"`)) ||
		!bytes.Contains(fast.body, []byte("list_changed")) {
		t.Errorf("want an SSE stream with the notification and the tools, got %v", fast)
	}
}

// TestColdListOverMCPIsParallel: a cold tools/list over MCP of 50 upstreams
// that each take D to answer costs about D, not 50 D. (Two tools each: the
// time to process many tools is BenchmarkToolsListCold's business.)
func TestColdListOverMCPIsParallel(t *testing.T) {
	const d = 200 * time.Millisecond
	f, url, servers := coldFederation(t, 50, 2, d)
	start := time.Now()
	f.SetServers(servers)
	r := rawPost(t, http.MethodPost, url, with(modernHeaders, "X-Test-Principal", "p"), modernList(1))
	took := time.Since(start)
	if r.status != http.StatusOK || bytes.Count(r.body, []byte(`"name":"s`)) != 50*2 || bytes.Contains(r.body, []byte(MetaMissing)) {
		t.Fatalf("cold list: %d %.300s", r.status, r.body)
	}
	if took > 5*d {
		t.Errorf("cold list over 50 upstreams of %v took %v; one after another would be %v", d, took, 50*d)
	}
}

// coldFederation returns a federation over n upstreams of k tools that
// answer lists after d, served over HTTP, with the servers to register.
func coldFederation(t testing.TB, n, k int, d time.Duration) (*Federation, string, []Server) {
	u := newFake()
	var servers []Server
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		var tools []string
		for j := range k {
			tools = append(tools, fmt.Sprintf("tool_%02d", j))
		}
		u.setTools(name, tools...)
		servers = append(servers, Server{Name: name})
	}
	f, ts := newTestFederation(t, &slowUpstreams{fakeUpstreams: u, delay: d}, Config{ListTimeout: 10 * d})
	return f, ts.URL + "/mcp", servers
}
