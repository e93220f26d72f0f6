package federation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// realUpstream starts an in-process mcp-go server over streamable HTTP with
// an echo tool, a progress tool and the tools named in extra.
func realUpstream(t testing.TB, name string, extra ...string) *httptest.Server {
	t.Helper()
	s := server.NewMCPServer(name, "1.0.0", server.WithToolCapabilities(true), server.WithLogging())
	echo := func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{
			Content:           []mcp.Content{mcp.NewTextContent(name + ":" + req.Params.Name + ":" + req.GetString("message", ""))},
			StructuredContent: map[string]any{"server": name},
		}, nil
	}
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message")), echo)
	s.AddTool(mcp.NewTool("fail"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("it failed"), nil
	})
	s.AddTool(mcp.NewTool("progress"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var token mcp.ProgressToken
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		srv := server.ServerFromContext(ctx)
		for i := range 3 {
			_ = srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress),
				map[string]any{"progressToken": token, "progress": float64(i * 50), "total": 100.0})
			time.Sleep(20 * time.Millisecond)
		}
		return mcp.NewToolResultText("done"), nil
	})
	for _, n := range extra {
		s.AddTool(mcp.NewTool(n), echo)
	}
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	return ts
}

// hangingUpstream accepts connections and never answers.
func hangingUpstream(t testing.TB) *httptest.Server {
	t.Helper()
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); ts.Close() })
	return ts
}

// realFederation wires a real pool and federation like the gateway does.
func realFederation(t testing.TB, cfg Config, specs ...upstream.Spec) (*Federation, *httptest.Server) {
	t.Helper()
	var f *Federation
	var mu sync.Mutex
	pool := upstream.New(upstream.Config{ListTimeout: 2 * time.Second, CallTimeout: 5 * time.Second,
		OnListChanged: func(server, method string) {
			mu.Lock()
			defer mu.Unlock()
			if f != nil {
				f.ListChanged(server, method)
			}
		}})
	t.Cleanup(func() { _ = pool.Close() })
	pool.Update(specs)
	cfg.Upstreams = pool
	cfg.Principal = testPrincipal
	var err error
	mu.Lock()
	f, err = New(cfg)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var servers []Server
	for _, s := range specs {
		servers = append(servers, Server{ID: "id-" + s.Name, Name: s.Name})
	}
	f.SetServers(servers)
	ts := httptest.NewServer(withPrincipal(f.Handler()))
	t.Cleanup(func() {
		ts.Close()
		_ = f.Close()
	})
	return f, ts
}

func TestIntegrationRealPool(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	long := strings.Repeat("L", 70)
	a := realUpstream(t, "a", long, "odd.name with/chars")
	b := realUpstream(t, "b")
	_, ts := realFederation(t, Config{},
		upstream.Spec{Name: "a", URL: a.URL}, upstream.Spec{Name: "b", URL: b.URL})

	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			c := dial(t, ts.URL+"/mcp", e, "p", nil)
			tools := listTools(t, c)
			names := toolNames(tools.Tools)
			for _, want := range []string{"a-echo", "a-progress", "b-echo", federatedName("a", long), federatedName("a", "odd.name with/chars")} {
				if !slices.Contains(names, want) {
					t.Errorf("missing %s in %v", want, names)
				}
			}
			for _, tool := range tools.Tools {
				if !validName(tool.Name) {
					t.Errorf("invalid name %q", tool.Name)
				}
			}
			for name, want := range map[string]string{"b-echo": "b:echo:hi", federatedName("a", long): "a:" + long + ":hi"} {
				res, err := callTool(c, name)
				if err != nil {
					t.Fatalf("call %s: %v", name, err)
				}
				if got := res.Content[0].(mcp.TextContent).Text; got != want {
					t.Errorf("call %s = %q, want %q", name, got, want)
				}
			}
			res, err := callTool(c, "a-fail")
			if err != nil || !res.IsError {
				t.Errorf("isError not passed through: %+v, %v", res, err)
			}
			if _, err := callTool(c, "a-nothing"); !errors.Is(err, mcp.ErrInvalidParams) {
				t.Errorf("unknown tool: %v", err)
			}

			var mu sync.Mutex
			var progress []any
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == string(mcp.MethodNotificationProgress) {
					mu.Lock()
					progress = append(progress, n.Params.AdditionalFields["progress"])
					mu.Unlock()
				}
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = "a-progress"
			req.Params.Meta = &mcp.Meta{ProgressToken: "p-1"}
			if _, err := c.CallTool(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			if len(progress) < 2 {
				t.Errorf("progress notifications = %v, want >= 2 of [0 50 100]", progress)
			}
			mu.Unlock()

			one := dial(t, ts.URL+"/a/mcp", e, "p", nil)
			if names := toolNames(listTools(t, one).Tools); !slices.Contains(names, long) {
				t.Errorf("single route names %v lack the original long name", names)
			}
			for _, n := range []string{"echo", "a-echo"} {
				if _, err := callTool(one, n); err != nil {
					t.Errorf("single route call %s: %v", n, err)
				}
			}
			if _, err := callTool(one, "b-echo"); !errors.Is(err, mcp.ErrInvalidParams) {
				t.Errorf("cross-server prefix on /a/mcp: %v", err)
			}
		})
	}
}

func TestIntegrationHangingUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	a := realUpstream(t, "a")
	h := hangingUpstream(t)
	_, ts := realFederation(t, Config{ListTimeout: 500 * time.Millisecond},
		upstream.Spec{Name: "a", URL: a.URL}, upstream.Spec{Name: "dead", URL: h.URL})
	c := dial(t, ts.URL+"/mcp", modern, "p", nil)
	start := time.Now()
	res := listTools(t, c)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("list took %v", d)
	}
	if names := toolNames(res.Tools); !slices.Contains(names, "a-echo") {
		t.Errorf("healthy server missing: %v", names)
	}
	if res.Meta == nil || fmt.Sprint(res.Meta.AdditionalFields[MetaMissing]) != "[dead]" {
		t.Errorf("_meta = %+v, want dead missing", res.Meta)
	}
}

type samplingHandler struct{}

func (samplingHandler) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return &mcp.CreateMessageResult{Model: "test-model",
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("sampled")}}, nil
}

// Sampling requested by an upstream during a call reaches a 2025-era
// downstream client and its answer goes back up.
func TestIntegrationSampling(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	s := server.NewMCPServer("s", "1.0.0", server.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("ask"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		req := mcp.CreateMessageRequest{}
		req.Messages = []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent("hi")}}
		req.MaxTokens = 10
		//lint:ignore SA1019 the fixture plays a 2025-era upstream
		res, err := server.ServerFromContext(ctx).RequestSampling(ctx, req)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		text, _ := res.Content.(mcp.TextContent)
		return mcp.NewToolResultText(text.Text), nil
	})
	up := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(up.Close) // after the pool closes its streams
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "s", URL: up.URL})

	// mcp-go's client answers server requests only on its GET stream.
	//lint:ignore SA1019 a 2025-era client is the point of this test
	listen := transport.WithContinuousListening()
	tr, err := transport.NewStreamableHTTP(ts.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{"X-Test-Principal": "p"}), listen)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion(mcp.ProtocolVersion20251125), client.WithSamplingHandler(samplingHandler{}))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "s-ask"
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(mcp.TextContent).Text; got != "sampled" || res.IsError {
		t.Errorf("result %q (isError %v), want the downstream client's sample", got, res.IsError)
	}
}
