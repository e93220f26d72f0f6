package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"
)

// variants are the upstream flavours every behaviour is checked against.
var variants = []struct {
	name, kind, protocol string
}{
	{"http-legacy", "http", ProtocolLegacy},
	{"http-auto", "http", ProtocolAuto},
	{"sse", "sse", ""},
}

func TestFeatures(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{}, spec)
			ctx := context.Background()

			tools, err := p.ListTools(ctx, "up")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range tools {
				names = append(names, tl.Name)
			}
			if len(names) != 7 {
				t.Errorf("got tools %v, want 7", names)
			}

			res, err := p.CallTool(ctx, "up", callReq("echo", map[string]any{"text": "hi"}), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, res); got != "hi" {
				t.Errorf("echo: got %q, want hi", got)
			}

			rs, err := p.ListResources(ctx, "up")
			if err != nil || len(rs) != 1 || rs[0].URI != "test://static" {
				t.Errorf("ListResources: got %+v, %v", rs, err)
			}
			rts, err := p.ListResourceTemplates(ctx, "up")
			if err != nil || len(rts) != 1 {
				t.Errorf("ListResourceTemplates: got %+v, %v", rts, err)
			}
			var rr mcp.ReadResourceRequest
			rr.Params.URI = "test://items/7"
			read, err := p.ReadResource(ctx, "up", rr)
			if err != nil {
				t.Fatal(err)
			}
			if tc, ok := read.Contents[0].(mcp.TextResourceContents); !ok || tc.Text != "item body" {
				t.Errorf("ReadResource: got %+v", read.Contents)
			}
			ps, err := p.ListPrompts(ctx, "up")
			if err != nil || len(ps) != 1 || ps[0].Name != "greet" {
				t.Errorf("ListPrompts: got %+v, %v", ps, err)
			}
			var gp mcp.GetPromptRequest
			gp.Params.Name = "greet"
			gp.Params.Arguments = map[string]string{"name": "bob"}
			pr, err := p.GetPrompt(ctx, "up", gp)
			if err != nil {
				t.Fatal(err)
			}
			if tc, ok := pr.Messages[0].Content.(mcp.TextContent); !ok || tc.Text != "hello bob" {
				t.Errorf("GetPrompt: got %+v", pr.Messages)
			}
			var cr mcp.CompleteRequest
			cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "greet"}
			cr.Params.Argument = mcp.CompleteArgument{Name: "name", Value: "al"}
			comp, err := p.Complete(ctx, "up", cr)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"alice", "alan"}, comp.Completion.Values); diff != "" {
				t.Errorf("Complete (-want +got):\n%s", diff)
			}

			h := p.Health()["up"]
			if !h.Healthy || h.Tools != 7 || h.Err != "" || h.CheckedAt.IsZero() {
				t.Errorf("health: got %+v", h)
			}

			_, err = p.CallTool(ctx, "nope", callReq("echo", nil), nil)
			if !errors.Is(err, ErrUnknownServer) || !strings.Contains(err.Error(), `upstream "nope"`) {
				t.Errorf("unknown server: got %v", err)
			}
		})
	}
}

func TestProtocolGenerations(t *testing.T) {
	f := newFake(t, "http")
	legacy, auto := f.spec("legacy"), f.spec("auto")
	auto.Protocol = ProtocolAuto
	p := newPool(t, Config{}, legacy, auto)
	for name, modern := range map[string]bool{"legacy": false, "auto": true} {
		if _, err := p.ListTools(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		c, _ := p.conn(context.Background(), name)
		cl, err := c.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := mcp.IsModernProtocol(cl.ProtocolVersion()); got != modern {
			t.Errorf("%s: protocol %q, modern %v, want %v", name, cl.ProtocolVersion(), got, modern)
		}
	}
}

func TestBuildHeaders(t *testing.T) {
	spec := Spec{
		StaticHeaders:  map[string]string{"X-Static": "s", "x-clash": "static", "X-Static-Over": "static", "Mcp-Session-Id": "nope"},
		AuthHeaders:    map[string]string{"authorization": "Bearer up", "X-CLASH": "auth"},
		ForwardHeaders: []string{"x-fwd", "X-Static-Over", "X-Clash", "Cookie", "Authorization", "X-Toolgate-Api-Key", "X-Litellm-Api-Key", "Mcp-Session-Id", "Host", "X-Hop", "Upgrade", "X-Forwarded-For", "Proxy-Authorization"},
	}
	caller := http.Header{}
	for k, v := range map[string]string{
		"X-Fwd": "f", "X-Static-Over": "caller", "X-Clash": "caller", "Cookie": "c=1", "Authorization": "Bearer caller",
		"X-Toolgate-Api-Key": "k", "X-Litellm-Api-Key": "l", "Mcp-Session-Id": "evil", "Host": "evil",
		"Connection": "X-Hop", "X-Hop": "h", "Upgrade": "ws", "X-Forwarded-For": "1.2.3.4",
		"Proxy-Authorization": "p", "X-Request-Id": "rid", "X-Not-Listed": "n",
	} {
		caller.Set(k, v)
	}
	tests := []struct {
		name   string
		cred   map[string]string
		caller http.Header
		want   map[string]string
	}{
		{"no caller", nil, nil, map[string]string{"X-Static": "s", "X-Clash": "auth", "X-Static-Over": "static", "Authorization": "Bearer up"}},
		{"caller", nil, caller, map[string]string{"X-Static": "s", "X-Clash": "auth", "X-Static-Over": "static", "Authorization": "Bearer up", "X-Fwd": "f", "X-Request-Id": "rid"}},
		{"credential", map[string]string{"Authorization": "Bearer user"}, caller, map[string]string{"X-Static": "s", "X-Clash": "auth", "X-Static-Over": "static", "Authorization": "Bearer user", "X-Fwd": "f", "X-Request-Id": "rid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := buildHeaders(&spec, tc.cred, tc.caller)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeadersReachUpstream(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			spec.StaticHeaders = map[string]string{"X-Static": "s", "x-clash": "static"}
			spec.AuthHeaders = map[string]string{"Authorization": "Bearer up", "X-Clash": "auth"}
			spec.ForwardHeaders = []string{"X-Fwd", "x-clash", "Cookie", "Authorization", "X-Toolgate-Api-Key", "x-litellm-api-key", "Mcp-Session-Id", "Host", "X-Hop"}
			p := newPool(t, Config{}, spec)
			caller := http.Header{}
			caller.Set("X-Fwd", "f")
			caller.Set("X-Clash", "caller")
			caller.Set("Cookie", "session=1")
			caller.Set("Authorization", "Bearer caller")
			caller.Set("X-Toolgate-Api-Key", "k")
			caller.Set("X-Litellm-Api-Key", "l")
			caller.Set("Mcp-Session-Id", "evil")
			caller.Set("Connection", "X-Hop")
			caller.Set("X-Hop", "h")
			caller.Set("X-Request-Id", "req-1")
			caller.Set("X-Unlisted", "u")
			ctx := WithCallerHeaders(context.Background(), caller)
			if _, err := p.CallTool(ctx, "up", callReq("headers", nil), nil); err != nil {
				t.Fatal(err)
			}
			seen := f.seenHeaders()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d calls, want 1", len(seen))
			}
			h := seen[0]
			for name, want := range map[string]string{
				"X-Fwd": "f", "X-Static": "s", "X-Clash": "auth", "Authorization": "Bearer up", "X-Request-Id": "req-1",
				"Cookie": "", "X-Toolgate-Api-Key": "", "X-Litellm-Api-Key": "", "X-Hop": "", "X-Unlisted": "",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("upstream got %s=%q, want %q", name, got, want)
				}
			}
			if got := h.Get("Mcp-Session-Id"); got == "evil" {
				t.Errorf("caller's Mcp-Session-Id reached the upstream")
			}
		})
	}
}

// progressObserver collects what a caller's Observer receives.
type progressObserver struct {
	mu    sync.Mutex
	notes []mcp.JSONRPCNotification
}

func (o *progressObserver) observer() *Observer {
	return &Observer{OnNotification: func(n mcp.JSONRPCNotification) {
		o.mu.Lock()
		o.notes = append(o.notes, n)
		o.mu.Unlock()
	}}
}

func (o *progressObserver) all() []mcp.JSONRPCNotification {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]mcp.JSONRPCNotification(nil), o.notes...)
}

func TestProgressTokensDoNotLeak(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{}, spec)
			callers := []struct {
				tag   string
				token mcp.ProgressToken
			}{{"A", "same"}, {"B", "same"}, {"C", 42}}
			obs := make([]progressObserver, len(callers))
			var wg sync.WaitGroup
			errs := make([]error, len(callers))
			results := make([]string, len(callers))
			for i, c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := callReq("progress", map[string]any{"tag": c.tag})
					req.Params.Meta = &mcp.Meta{ProgressToken: c.token}
					res, err := p.CallTool(context.Background(), "up", req, obs[i].observer())
					errs[i] = err
					if err == nil && len(res.Content) > 0 {
						results[i] = res.Content[0].(mcp.TextContent).Text
					}
				}()
			}
			wg.Wait()
			for i, c := range callers {
				if errs[i] != nil {
					t.Fatalf("caller %s: %v", c.tag, errs[i])
				}
				// The upstream saw a gateway token, never the caller's.
				if !strings.HasPrefix(results[i], `"toolgate-`) {
					t.Errorf("caller %s: upstream saw token %s, want a gateway token", c.tag, results[i])
				}
				notes := obs[i].all()
				if len(notes) == 0 {
					t.Errorf("caller %s: no progress delivered", c.tag)
				}
				for _, n := range notes {
					tok := n.Params.AdditionalFields["progressToken"]
					if n.Method != "notifications/progress" || tok != c.token || n.Params.AdditionalFields["message"] != c.tag {
						t.Errorf("caller %s got %s token %v message %v, want its own token %v", c.tag, n.Method, tok, n.Params.AdditionalFields["message"], c.token)
					}
				}
			}
		})
	}
}

func TestLoggingReachesInFlightCaller(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{UpstreamLogLevel: "info"}, spec)
			var o progressObserver
			if _, err := p.CallTool(context.Background(), "up", callReq("log", map[string]any{"text": "working"}), o.observer()); err != nil {
				t.Fatal(err)
			}
			notes := o.all()
			if len(notes) != 1 || notes[0].Method != "notifications/message" || notes[0].Params.AdditionalFields["data"] != "working" {
				t.Errorf("got %+v, want one log message", notes)
			}
		})
	}
}

func TestSamplingAndElicitationRoutedToCaller(t *testing.T) {
	// mcp-go's SSE client cannot answer server requests: HTTP only.
	for _, v := range variants[:2] {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{}, spec)
			obs := &Observer{
				Sampling: func(ctx context.Context, r mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
					in := r.Messages[0].Content.(mcp.TextContent).Text
					return &mcp.CreateMessageResult{
						SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("sampled " + in)},
						Model:           "m",
					}, nil
				},
				Elicitation: func(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
					return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionDecline}}, nil
				},
			}
			ctx := context.Background()
			res, err := p.CallTool(ctx, "up", callReq("sample", map[string]any{"text": "q"}), obs)
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, res); got != "sampled q" || res.IsError {
				t.Errorf("sample: got %q (isError %v), want sampled q", got, res.IsError)
			}
			res, err = p.CallTool(ctx, "up", callReq("elicit", nil), obs)
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, res); got != "decline" {
				t.Errorf("elicit: got %q, want decline", got)
			}
			// Without an observer that samples, the upstream gets an error.
			res, err = p.CallTool(ctx, "up", callReq("sample", map[string]any{"text": "q"}), nil)
			if err == nil && !res.IsError {
				t.Errorf("got %q, want an error", text(t, res))
			}
		})
	}
}

func TestHangingUpstreamTimesOutAndIsCancelled(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			spec := f.spec("slow")
			spec.Protocol = v.protocol
			spec.CallTimeout = 300 * time.Millisecond
			p := newPool(t, Config{}, spec)
			if _, err := p.ListTools(context.Background(), "slow"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := p.CallTool(context.Background(), "slow", callReq("hang", nil), nil)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want deadline exceeded", err)
			}
			if want := `upstream "slow": call tool "hang": context deadline exceeded`; err.Error() != want {
				t.Errorf("got %q, want %q", err, want)
			}
			if elapsed > time.Second {
				t.Errorf("took %v, want about 300ms", elapsed)
			}
			// The upstream learns (notifications/cancelled, or the stream
			// closing on 2026-07-28).
			select {
			case <-f.cancelled:
			case <-time.After(3 * time.Second):
				t.Errorf("upstream handler was never cancelled")
			}
			// A caller cancelling works the same way.
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			_, err = p.CallTool(ctx, "slow", callReq("hang", nil), nil)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want canceled", err)
			}
			select {
			case <-f.cancelled:
			case <-time.After(3 * time.Second):
				t.Errorf("upstream handler was never cancelled after the caller gave up")
			}
		})
	}
}

func TestRestartHeals(t *testing.T) {
	for _, v := range append(variants, struct{ name, kind, protocol string }{"http-stateless-ids", "http", ""}) {
		t.Run(v.name, func(t *testing.T) {
			opts := []fakeOpt{stateful}
			if v.name == "http-stateless-ids" {
				// mcp-go's default session manager accepts any well-formed
				// ID: the restarted upstream takes the old session.
				opts = nil
			}
			f := newFake(t, v.kind, opts...)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{}, spec)
			ctx := context.Background()
			if _, err := p.CallTool(ctx, "up", callReq("echo", map[string]any{"text": "1"}), nil); err != nil {
				t.Fatal(err)
			}
			f.restart()
			res, err := p.CallTool(ctx, "up", callReq("echo", map[string]any{"text": "2"}), nil)
			if err != nil {
				t.Fatalf("call after restart: %v", err)
			}
			if got := text(t, res); got != "2" {
				t.Errorf("got %q, want 2", got)
			}
			// Side traffic works on the healed connection too.
			var o progressObserver
			req := callReq("progress", map[string]any{"tag": "x"})
			req.Params.Meta = &mcp.Meta{ProgressToken: "t"}
			if _, err := p.CallTool(ctx, "up", req, o.observer()); err != nil {
				t.Fatal(err)
			}
			if len(o.all()) == 0 {
				t.Errorf("no progress after restart")
			}
		})
	}
}

func TestSessionNotFoundRetried(t *testing.T) {
	f := newFake(t, "http", stateful)
	p := newPool(t, Config{}, f.spec("up"))
	ctx := context.Background()
	if _, err := p.CallTool(ctx, "up", callReq("echo", map[string]any{"text": "1"}), nil); err != nil {
		t.Fatal(err)
	}
	c, _ := p.conn(ctx, "up")
	cl, _ := c.get(ctx)
	sid := cl.GetSessionId()
	if sid == "" {
		t.Fatal("no session")
	}
	before := f.inits.Load()
	// End the session behind the pool's back, as an upstream expiring it would.
	req, _ := http.NewRequest(http.MethodDelete, f.url(), nil)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	res, err := p.CallTool(ctx, "up", callReq("echo", map[string]any{"text": "2"}), nil)
	if err != nil {
		t.Fatalf("call after session end: %v", err)
	}
	if got := text(t, res); got != "2" {
		t.Errorf("got %q, want 2", got)
	}
	if got := f.inits.Load() - before; got != 1 {
		t.Errorf("re-initialized %d times, want 1", got)
	}
}

func TestDeadUpstreamIsolated(t *testing.T) {
	good := newFake(t, "http")
	dead := newFake(t, "http")
	dead.stop()
	// hanging accepts connections and never answers.
	hangRelease := make(chan struct{})
	hanging := newHangingServer(t, hangRelease)
	p := newPool(t, Config{ListTimeout: 300 * time.Millisecond, CallTimeout: 500 * time.Millisecond},
		good.spec("good"), dead.spec("dead"), Spec{Name: "hanging", URL: hanging + "/mcp"})
	ctx := context.Background()

	var wg sync.WaitGroup
	for _, name := range []string{"dead", "hanging"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := p.CallTool(ctx, name, callReq("echo", nil), nil)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("upstream %q", name)) {
				t.Errorf("%s: got %v, want an error naming it", name, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s: failed after %v, want within the timeout", name, d)
			}
		}()
	}
	start := time.Now()
	res, err := p.CallTool(ctx, "good", callReq("echo", map[string]any{"text": "ok"}), nil)
	if err != nil || text(t, res) != "ok" {
		t.Fatalf("good: got %v, %v", res, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("good call took %v", d)
	}
	wg.Wait()
	close(hangRelease)
}

// newHangingServer returns the URL of a server that never answers until
// release is closed.
func newHangingServer(t *testing.T, release chan struct{}) string {
	hs := newTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		hs.Listener.Close() // first: a client reconnecting in between would hold Close forever
		hs.CloseClientConnections()
		hs.Close()
	})
	return hs.URL
}

func TestHealth(t *testing.T) {
	f := newFake(t, "sse")
	empty := newFake(t, "http")
	for _, name := range []string{"echo", "headers", "progress", "log", "hang", "sample", "elicit"} {
		empty.mcpServer().DeleteTools(name)
	}
	dead := newFake(t, "http")
	dead.stop()
	var mu sync.Mutex
	events := map[string][]bool{}
	hanging := newHangingServer(t, make(chan struct{}))
	p := newPool(t, Config{ListTimeout: 300 * time.Millisecond, OnHealth: func(server string, healthy bool, err error) {
		mu.Lock()
		events[server] = append(events[server], healthy)
		mu.Unlock()
	}}, f.spec("up"), empty.spec("empty"), dead.spec("dead"), Spec{Name: "hanging", URL: hanging + "/mcp"})

	eventually(t, 5*time.Second, "first health results", func() bool {
		h := p.Health()
		return h["up"].Healthy && h["empty"].Healthy && !h["dead"].CheckedAt.IsZero() && !h["hanging"].CheckedAt.IsZero()
	})
	if h := p.Health()["hanging"]; h.Healthy || !strings.Contains(h.Err, "deadline exceeded") {
		t.Errorf("hanging: got %+v, want unhealthy, timed out", h)
	}
	h := p.Health()
	if h["up"].Tools != 7 {
		t.Errorf("up: got %+v, want 7 tools", h["up"])
	}
	if h["empty"].Tools != 0 || h["empty"].Err != "" {
		t.Errorf("empty: got %+v, want healthy with zero tools", h["empty"])
	}
	if h["dead"].Healthy || h["dead"].Err == "" || h["dead"].Tools != 0 {
		t.Errorf("dead: got %+v, want unhealthy with an error", h["dead"])
	}

	// The SSE stream dropping marks the server unhealthy; the background
	// retry heals it once the upstream is back.
	f.stop()
	eventually(t, 5*time.Second, "unhealthy after stop", func() bool { return !p.Health()["up"].Healthy })
	f.start(f.addr)
	eventually(t, 5*time.Second, "healthy after restart", func() bool { return p.Health()["up"].Healthy })

	// The dead one comes up: the backoff retry finds it.
	dead.start(dead.addr)
	eventually(t, 5*time.Second, "dead upstream healed", func() bool { return p.Health()["dead"].Healthy })

	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]bool{true, false, true}, events["up"]); diff != "" {
		t.Errorf("OnHealth(up) (-want +got):\n%s", diff)
	}
}

func TestListChanged(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := newFake(t, v.kind)
			got := make(chan string, 64)
			spec := f.spec("up")
			spec.Protocol = v.protocol
			p := newPool(t, Config{OnListChanged: func(server, method string) { got <- server + " " + method }}, spec)
			if _, err := p.ListTools(context.Background(), "up"); err != nil {
				t.Fatal(err)
			}
			// The GET stream opens asynchronously after initialize.
			deadline := time.After(5 * time.Second)
			for i := 0; ; i++ {
				f.mcpServer().AddTool(mcp.NewTool(fmt.Sprintf("new%d", i)), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return mcp.NewToolResultText("new"), nil
				})
				select {
				case s := <-got:
					if s != "up notifications/tools/list_changed" {
						t.Errorf("got %q", s)
					}
					return
				case <-time.After(100 * time.Millisecond):
				case <-deadline:
					t.Fatal("no list_changed")
				}
			}
		})
	}
}

func TestUpdateReconciles(t *testing.T) {
	a, b := newFake(t, "http"), newFake(t, "sse")
	p := newPool(t, Config{}, a.spec("a"), b.spec("b"))
	ctx := context.Background()
	for _, s := range []string{"a", "b"} {
		if _, err := p.CallTool(ctx, s, callReq("echo", map[string]any{"text": s}), nil); err != nil {
			t.Fatal(err)
		}
	}
	ca, _ := p.conn(ctx, "a")
	cb, _ := p.conn(ctx, "b")
	clA, _ := ca.get(ctx)

	changed := b.spec("b")
	changed.StaticHeaders = map[string]string{"X-New": "1"}
	c := newFake(t, "http")
	p.Update([]Spec{a.spec("a"), changed, c.spec("c")})

	ca2, _ := p.conn(ctx, "a")
	clA2, _ := ca2.get(ctx)
	if ca2 != ca || clA2 != clA {
		t.Errorf("unchanged server a got a new client")
	}
	cb2, _ := p.conn(ctx, "b")
	if cb2 == cb {
		t.Errorf("changed server b kept its client")
	}
	for _, s := range []string{"a", "b", "c"} {
		if _, err := p.CallTool(ctx, s, callReq("echo", map[string]any{"text": s}), nil); err != nil {
			t.Errorf("%s after update: %v", s, err)
		}
	}
	p.Update([]Spec{c.spec("c")})
	if _, err := p.CallTool(ctx, "a", callReq("echo", nil), nil); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("removed server: got %v, want ErrUnknownServer", err)
	}
	if _, ok := p.Health()["a"]; ok {
		t.Errorf("removed server still in Health")
	}
}

func TestCredentialClients(t *testing.T) {
	f := newFake(t, "http")
	spec := f.spec("up")
	spec.AuthHeaders = map[string]string{"Authorization": "Bearer shared"}
	p := newPool(t, Config{}, spec)
	ctx := context.Background()
	if _, err := p.CallTool(ctx, "up", callReq("headers", nil), nil); err != nil {
		t.Fatal(err)
	}
	uctx := WithCredential(ctx, "user-1", map[string]string{"Authorization": "Bearer user-1"})
	if _, err := p.CallTool(uctx, "up", callReq("headers", nil), nil); err != nil {
		t.Fatal(err)
	}
	uctx = WithCredential(ctx, "user-1", map[string]string{"Authorization": "Bearer user-1-refreshed"})
	if _, err := p.CallTool(uctx, "up", callReq("headers", nil), nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range f.seenHeaders() {
		got = append(got, h.Get("Authorization"))
	}
	if diff := cmp.Diff([]string{"Bearer shared", "Bearer user-1", "Bearer user-1-refreshed"}, got); diff != "" {
		t.Errorf("Authorization seen (-want +got):\n%s", diff)
	}
	def, _ := p.conn(ctx, "up")
	user, _ := p.conn(uctx, "up")
	if def == user {
		t.Errorf("credential shares the default client")
	}
}

func TestClosedPool(t *testing.T) {
	f := newFake(t, "http")
	p := New(Config{})
	p.Update([]Spec{f.spec("up")})
	if _, err := p.ListTools(context.Background(), "up"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ListTools(context.Background(), "up"); err == nil {
		t.Error("ListTools after Close succeeded")
	}
	p.Update([]Spec{f.spec("up")}) // no-op, no goroutines
}

// TestSlowCallbacksDoNotBlockReaders checks that a callback that blocks
// (OnListChanged here) holds up neither the upstream reader nor calls.
func TestSlowCallbacksDoNotBlockReaders(t *testing.T) {
	f := newFake(t, "sse")
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	p := newPool(t, Config{OnListChanged: func(string, string) {
		entered <- struct{}{}
		<-release
	}}, f.spec("up"))
	defer close(release)
	ctx := context.Background()
	if _, err := p.ListTools(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		f.mcpServer().AddTool(mcp.NewTool(fmt.Sprintf("x%d", i)), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("x"), nil
		})
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no list_changed")
	}
	// The callback is stuck; the SSE reader must still deliver responses.
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := p.CallTool(cctx, "up", callReq("echo", map[string]any{"text": "x"}), nil)
		cancel()
		if err != nil {
			t.Fatalf("call while a callback blocks: %v", err)
		}
	}
}

func TestIdleCredentialClientsClosed(t *testing.T) {
	f := newFake(t, "http")
	p := newPool(t, Config{CredentialIdleTTL: 50 * time.Millisecond, HealthInterval: 20 * time.Millisecond}, f.spec("up"))
	uctx := WithCredential(context.Background(), "u", map[string]string{"Authorization": "Bearer u"})
	if _, err := p.CallTool(uctx, "up", callReq("echo", map[string]any{"text": "1"}), nil); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.servers["up"].creds)
	}
	if count() != 1 {
		t.Fatalf("got %d credential clients, want 1", count())
	}
	eventually(t, 5*time.Second, "idle credential client closed", func() bool { return count() == 0 })
	if _, err := p.CallTool(uctx, "up", callReq("echo", map[string]any{"text": "2"}), nil); err != nil {
		t.Fatalf("call after sweep: %v", err)
	}
}

func TestUpstreamMeta(t *testing.T) {
	p := New(Config{})
	defer p.Close()
	in := &mcp.Meta{ProgressToken: 7, AdditionalFields: map[string]any{
		"progressToken": 7, "trace": "abc", mcp.MetaKeyProtocolVersion: "2026-07-28",
		mcp.MetaKeyClientInfo: "downstream", mcp.MetaKeyLogLevel: "info",
	}}
	withObs := &call{obs: &Observer{OnNotification: func(mcp.JSONRPCNotification) {}}}
	out := p.upstreamMeta(in, withObs)
	if withObs.token != 7 || withObs.upTok == "" || out.ProgressToken != withObs.upTok {
		t.Errorf("token: got call %+v meta %v", withObs, out.ProgressToken)
	}
	if diff := cmp.Diff(map[string]any{"trace": "abc", mcp.MetaKeyLogLevel: "info"}, out.AdditionalFields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	noObs := &call{}
	if out := p.upstreamMeta(in, noObs); out.ProgressToken != nil || noObs.upTok != "" {
		t.Errorf("without an observer a token was sent: %v", out.ProgressToken)
	}
	if in.AdditionalFields["trace"] != "abc" || len(in.AdditionalFields) != 5 {
		t.Errorf("caller's meta modified: %v", in.AdditionalFields)
	}
}
