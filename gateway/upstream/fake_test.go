package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// fakeUpstream is an in-process mcp-go server on a loopback httptest server,
// over streamable HTTP ("http") or SSE ("sse"), that can be stopped and
// restarted on the same address.
type fakeUpstream struct {
	tb       testing.TB
	kind     string
	stateful bool
	addr     string

	inits     atomic.Int32  // initialize requests seen
	cancelled chan string   // tools whose context ended early
	release   chan struct{} // closing it ends "hang"

	mu      sync.Mutex
	srv     *server.MCPServer
	hs      *httptest.Server
	headers []http.Header // headers of each "headers" call
}

type fakeOpt func(*fakeUpstream)

func stateful(f *fakeUpstream) { f.stateful = true }

func newFake(tb testing.TB, kind string, opts ...fakeOpt) *fakeUpstream {
	tb.Helper()
	f := &fakeUpstream{tb: tb, kind: kind, cancelled: make(chan string, 16), release: make(chan struct{})}
	for _, o := range opts {
		o(f)
	}
	f.start("127.0.0.1:0")
	tb.Cleanup(func() {
		f.stop()
		select {
		case <-f.release:
		default:
			close(f.release)
		}
	})
	return f
}

// url is the endpoint a Spec names.
func (f *fakeUpstream) url() string {
	if f.kind == "sse" {
		return "http://" + f.addr + "/sse"
	}
	return "http://" + f.addr + "/mcp"
}

func (f *fakeUpstream) spec(name string) Spec {
	return Spec{Name: name, URL: f.url(), Transport: f.kind}
}

func (f *fakeUpstream) mcpServer() *server.MCPServer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.srv
}

func (f *fakeUpstream) seenHeaders() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.headers...)
}

func (f *fakeUpstream) start(addr string) {
	f.tb.Helper()
	hooks := &server.Hooks{}
	hooks.AddBeforeInitialize(func(context.Context, any, *mcp.InitializeRequest) { f.inits.Add(1) })
	s := server.NewMCPServer("fake", "1.0.0",
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true),
		server.WithPromptCapabilities(true),
		server.WithLogging(),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completer{}),
		server.WithHooks(hooks),
	)
	s.EnableSampling()
	f.addTools(s)
	s.AddResource(mcp.NewResource("test://static", "static"), func(ctx context.Context, r mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: r.Params.URI, MIMEType: "text/plain", Text: "static body"}}, nil
	})
	s.AddResourceTemplate(mcp.NewResourceTemplate("test://items/{id}", "item"), func(ctx context.Context, r mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: r.Params.URI, Text: "item body"}}, nil
	})
	s.AddPrompt(mcp.NewPrompt("greet", mcp.WithArgument("name")), func(ctx context.Context, r mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return mcp.NewGetPromptResult("greeting", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("hello "+r.Params.Arguments["name"])),
		}), nil
	})

	var h http.Handler
	if f.kind == "sse" {
		h = server.NewSSEServer(s)
	} else {
		var opts []server.StreamableHTTPOption
		if f.stateful {
			opts = append(opts, server.WithStateful(true))
		}
		h = server.NewStreamableHTTPServer(s, opts...)
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.tb.Fatalf("listen %s: %v", addr, err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	f.mu.Lock()
	f.srv, f.hs, f.addr = s, hs, l.Addr().String()
	f.mu.Unlock()
}

// stop kills the server and every connection to it, as a crash would.
func (f *fakeUpstream) stop() {
	f.mu.Lock()
	hs := f.hs
	f.hs = nil
	f.mu.Unlock()
	if hs != nil {
		// Stop accepting first, or the pool reconnects between killing the
		// connections and Close, which then waits for that stream forever.
		hs.Listener.Close()
		hs.CloseClientConnections()
		hs.Close()
	}
}

// restart stops the server and starts a fresh one (no sessions) on the
// same address.
func (f *fakeUpstream) restart() {
	f.stop()
	time.Sleep(50 * time.Millisecond) // a restart takes a moment
	f.start(f.addr)
}

func (f *fakeUpstream) addTools(s *server.MCPServer) {
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(r.GetString("text", "")), nil
	})
	s.AddTool(mcp.NewTool("headers"), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		return mcp.NewToolResultText("ok"), nil
	})
	s.AddTool(mcp.NewTool("progress", mcp.WithString("tag")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var tok any
		if r.Params.Meta != nil {
			tok = r.Params.Meta.ProgressToken
		}
		if tok == nil {
			return mcp.NewToolResultError("no progress token"), nil
		}
		tag := r.GetString("tag", "")
		for i := 1; i <= 3; i++ {
			err := s.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": tok, "progress": i, "total": 3, "message": tag,
			})
			if err != nil {
				return nil, err
			}
			time.Sleep(10 * time.Millisecond)
		}
		b, _ := json.Marshal(tok)
		return mcp.NewToolResultText(string(b)), nil
	})
	s.AddTool(mcp.NewTool("log", mcp.WithString("text")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		err := s.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(mcp.LoggingLevelInfo, "fake", r.GetString("text", "")))
		if err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
		return mcp.NewToolResultText("logged"), nil
	})
	s.AddTool(mcp.NewTool("hang"), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {
		case <-ctx.Done():
			f.cancelled <- "hang"
			return nil, ctx.Err()
		case <-f.release:
			return mcp.NewToolResultText("released"), nil
		}
	})
	// sample and elicit ask the caller through the multi round-trip
	// pattern: mcp-go sends 2025-era clients a server-initiated request on
	// the handler's behalf, and 2026-07-28 clients an input_required result.
	s.AddTool(mcp.NewTool("sample", mcp.WithString("text")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if res := server.SamplingResponse(r.Params.InputResponses, "s"); res != nil {
			content, err := mcp.ParseSamplingContent(res.Content)
			if err != nil {
				return nil, err
			}
			tc, ok := content.(mcp.TextContent)
			if !ok {
				return mcp.NewToolResultError(fmt.Sprintf("sampling: content %T", res.Content)), nil
			}
			return mcp.NewToolResultText(tc.Text), nil
		}
		return server.NewInputRequestBuilder("").Sample("s", mcp.CreateMessageParams{
			Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(r.GetString("text", ""))}},
			MaxTokens: 10,
		}).ToolResult(), nil
	})
	s.AddTool(mcp.NewTool("elicit"), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if res := server.ElicitationResponse(r.Params.InputResponses, "e"); res != nil {
			return mcp.NewToolResultText(string(res.Action)), nil
		}
		return server.NewInputRequestBuilder("").Elicit("e", mcp.ElicitationParams{
			Message:         "ok?",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
		}).ToolResult(), nil
	})
}

type completer struct{}

func (completer) CompletePromptArgument(ctx context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	if prompt != "greet" {
		return nil, errors.New("unknown prompt")
	}
	return &mcp.Completion{Values: []string{arg.Value + "ice", arg.Value + "an"}}, nil
}

// newPool returns a pool with fast retries, closed at the end of the test.
func newPool(tb testing.TB, cfg Config, specs ...Spec) *Pool {
	tb.Helper()
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 20 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 200 * time.Millisecond
	}
	p := New(cfg)
	tb.Cleanup(func() { p.Close() })
	p.Update(specs)
	return p
}

func text(tb testing.TB, res *mcp.CallToolResult) string {
	tb.Helper()
	if res == nil || len(res.Content) == 0 {
		tb.Fatalf("empty result %+v", res)
	}
	tc, ok := res.Content[0].(mcp.TextContent)
	if !ok {
		tb.Fatalf("content %T, want text", res.Content[0])
	}
	return tc.Text
}

func callReq(name string, args map[string]any) mcp.CallToolRequest {
	var r mcp.CallToolRequest
	r.Params.Name = name
	r.Params.Arguments = args
	return r
}

// eventually polls cond until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }
