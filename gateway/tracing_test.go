package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/store"
)

// TestTraceReachesUpstream: with a tracer provider, a tools/call through /mcp is one trace:
// the gateway's HTTP server span continues the caller's traceparent; below it the
// tools/call is an MCP server span, the upstream call an MCP client span (whose trace
// context the upstream gets in params._meta), and the upstream HTTP request a client span
// whose traceparent header the upstream gets. A caller's trace context in params._meta
// parents the MCP server span instead, with the HTTP span linked; a tool's isError result
// marks both MCP spans failed.
func TestTraceReachesUpstream(t *testing.T) {
	type seen struct{ header, meta string }
	var mu sync.Mutex
	var upstreamSaw []seen // traceparent header and _meta.traceparent of each tools/call
	s := server.NewMCPServer("traced", "1")
	s.AddTool(mcp.NewTool("echo"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.GetArguments()["message"] == "fail" {
			return mcp.NewToolResultError("failed on cue"), nil
		}
		return mcp.NewToolResultText("ok"), nil
	})
	mcpHandler := server.NewStreamableHTTPServer(s)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string
			Params struct {
				Meta map[string]any `json:"_meta"`
			}
		}
		if r.Method == http.MethodPost && json.Unmarshal(body, &msg) == nil && msg.Method == "tools/call" {
			tp, _ := msg.Params.Meta["traceparent"].(string)
			mu.Lock()
			upstreamSaw = append(upstreamSaw, seen{r.Header.Get("Traceparent"), tp})
			mu.Unlock()
		}
		mcpHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	g := newTestGateway(t, func(c *Config) {
		c.TracerProvider = tp
		c.MCPServers = []*store.MCPServer{{Name: "traced", URL: up.URL + "/mcp", AvailableOnPublicInternet: true}}
	})
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	c := dialMCP(t, g.url+"/mcp", true, map[string]string{
		"Authorization": "Bearer " + testMasterKey,
		"Traceparent":   "00-" + callerTrace + "-00f067aa0ba902b7-01",
	})
	if got := callText(t, c, "traced-echo", "hi"); got != "ok" {
		t.Fatalf("tool call: %q", got)
	}

	mu.Lock()
	saw := append([]seen(nil), upstreamSaw...)
	mu.Unlock()
	if len(saw) != 1 || !strings.HasPrefix(saw[0].header, "00-"+callerTrace+"-") || !strings.HasPrefix(saw[0].meta, "00-"+callerTrace+"-") {
		t.Fatalf("upstream tools/call trace context: got %+v, want header and _meta in trace %s", saw, callerTrace)
	}
	httpSpanID, mcpSpanID := strings.Split(saw[0].header, "-")[2], strings.Split(saw[0].meta, "-")[2]

	// The downstream spans end (and are exported) after the client has its answer: wait
	// until the chain from the upstream HTTP request up to the downstream one is there.
	byID := func(spans tracetest.SpanStubs, id string) *tracetest.SpanStub {
		for i := range spans {
			if spans[i].SpanContext.SpanID().String() == id {
				return &spans[i]
			}
		}
		return nil
	}
	var chain []*tracetest.SpanStub // upstream HTTP request, MCP client, MCP server, downstream HTTP request
	waitFor(t, "the upstream call's span and its parents", func() bool {
		spans := exp.GetSpans()
		chain = chain[:0]
		for sp := byID(spans, httpSpanID); sp != nil && len(chain) < 4; sp = byID(spans, sp.Parent.SpanID().String()) {
			chain = append(chain, sp)
		}
		return len(chain) == 4
	})
	want := []struct {
		name string
		kind trace.SpanKind
	}{{"", trace.SpanKindClient}, {"tools/call echo", trace.SpanKindClient}, {"tools/call traced-echo", trace.SpanKindServer}, {"POST class:mcp", trace.SpanKindServer}}
	for i, w := range want {
		sp := chain[i]
		if sp.SpanContext.TraceID().String() != callerTrace || sp.SpanKind != w.kind || (w.name != "" && sp.Name != w.name) {
			t.Errorf("span %d up from the upstream request: %q %v in trace %s, want %q %v in %s", i, sp.Name, sp.SpanKind, sp.SpanContext.TraceID(), w.name, w.kind, callerTrace)
		}
	}
	if chain[1].SpanContext.SpanID().String() != mcpSpanID {
		t.Errorf("upstream _meta.traceparent names span %s, want the MCP client span %s", mcpSpanID, chain[1].SpanContext.SpanID())
	}
	if a := attrMap(chain[1].Attributes); a["mcp.method.name"] != "tools/call" || a["gen_ai.tool.name"] != "echo" ||
		a["gen_ai.operation.name"] != "execute_tool" || a["toolgate.mcp_server"] != "traced" {
		t.Errorf("MCP client span attributes: %v", a)
	}
	if a := attrMap(chain[2].Attributes); a["gen_ai.tool.name"] != "traced-echo" || a["mcp.session.id"] == nil || a["error.type"] != nil {
		t.Errorf("MCP server span attributes: %v", a)
	}

	// A caller that puts its trace context in _meta gets the MCP server span in its trace,
	// the HTTP request's span linked; a tool error marks both MCP spans.
	const metaTrace = "0af7651916cd43dd8448eb211c80319c"
	exp.Reset()
	req := mcp.CallToolRequest{}
	req.Params.Name = "traced-echo"
	req.Params.Arguments = map[string]any{"message": "fail"}
	req.Params.Meta = &mcp.Meta{AdditionalFields: map[string]any{"traceparent": "00-" + metaTrace + "-b7ad6b7169203331-01"}}
	if res, err := c.CallTool(context.Background(), req); err != nil || !res.IsError {
		t.Fatalf("call with _meta trace context: %v %+v", err, res)
	}
	sp := waitSpans(t, exp, "tools/call traced-echo", "tools/call echo")
	srv, cli := sp[0], sp[1]
	if srv.SpanContext.TraceID().String() != metaTrace || srv.Parent.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("MCP server span: trace %s parent %s, want the _meta's %s / b7ad6b7169203331", srv.SpanContext.TraceID(), srv.Parent.SpanID(), metaTrace)
	}
	if len(srv.Links) != 1 || srv.Links[0].SpanContext.TraceID().String() != callerTrace {
		t.Errorf("MCP server span links: %+v, want the HTTP request's span in trace %s", srv.Links, callerTrace)
	}
	mu.Lock()
	last := upstreamSaw[len(upstreamSaw)-1]
	mu.Unlock()
	if last.meta != "00-"+metaTrace+"-"+cli.SpanContext.SpanID().String()+"-01" {
		t.Errorf("upstream _meta.traceparent %q, want the MCP client span %s in trace %s", last.meta, cli.SpanContext.SpanID(), metaTrace)
	}
	for _, sp := range []*tracetest.SpanStub{srv, cli} {
		if a := attrMap(sp.Attributes); a["error.type"] != "tool_error" || sp.Status.Code != codes.Error {
			t.Errorf("%s (%v): error.type %v status %v, want tool_error / Error", sp.Name, sp.SpanKind, a["error.type"], sp.Status)
		}
	}
}

// TestUntracedMetaPassesThrough: with tracing off, a caller's trace context in _meta reaches
// the upstream as it was sent.
func TestUntracedMetaPassesThrough(t *testing.T) {
	var mu sync.Mutex
	var metas []string
	s := server.NewMCPServer("plain", "1")
	s.AddTool(mcp.NewTool("echo"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if m := req.Params.Meta; m != nil {
			tp, _ := m.AdditionalFields["traceparent"].(string)
			mu.Lock()
			metas = append(metas, tp)
			mu.Unlock()
		}
		return mcp.NewToolResultText("ok"), nil
	})
	up := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(up.Close)
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "plain", URL: up.URL + "/mcp", AvailableOnPublicInternet: true}}
	})
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})
	c := dialMCP(t, g.url+"/mcp", true, map[string]string{"Authorization": "Bearer " + testMasterKey})
	const sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req := mcp.CallToolRequest{}
	req.Params.Name = "plain-echo"
	req.Params.Meta = &mcp.Meta{AdditionalFields: map[string]any{"traceparent": sent}}
	if _, err := c.CallTool(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(metas) != 1 || metas[0] != sent {
		t.Errorf("upstream _meta.traceparent: %q, want %q", metas, sent)
	}
}

// waitSpans waits until exp holds a span of each name (spans end after the client has its
// answer) and returns them in names' order, the last of each name.
func waitSpans(t testing.TB, exp *tracetest.InMemoryExporter, names ...string) []*tracetest.SpanStub {
	t.Helper()
	out := make([]*tracetest.SpanStub, len(names))
	waitFor(t, "spans "+strings.Join(names, ", "), func() bool {
		spans := exp.GetSpans()
		clear(out)
		for i := range spans {
			for j, n := range names {
				if spans[i].Name == n {
					out[j] = &spans[i]
				}
			}
		}
		return !slices.Contains(out, nil)
	})
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// TestLLMCallTraced: through the whole gateway, a completion's provider call is a client
// span below the request's server span, after the GenAI conventions, and the provider gets
// that span as its parent. The Anthropic provider is the one named here.
func TestLLMCallTraced(t *testing.T) {
	var gotParent atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent.Store(r.Header.Get("Traceparent"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5}}`)
	}))
	defer up.Close()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	g := newTestGateway(t, func(c *Config) {
		c.TracerProvider = tp
		c.ModelList = []map[string]any{{"model_name": "claude", "litellm_params": map[string]any{"model": "anthropic/claude-x", "api_base": up.URL, "api_key": "sk-ant"}}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	r := g.do(t, "POST", "/v1/chat/completions", `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+testMasterKey, "Content-Type", "application/json")
	if r.status != 200 {
		t.Fatalf("completion: %d %s", r.status, r.body)
	}
	sp := waitSpans(t, exp, "chat claude-x", "POST /v1/chat/completions")
	call, req := sp[0], sp[1]
	if call.Parent.SpanID() != req.SpanContext.SpanID() || call.SpanKind != trace.SpanKindClient {
		t.Errorf("provider call span: parent %s kind %v, want the request's span %s and client", call.Parent.SpanID(), call.SpanKind, req.SpanContext.SpanID())
	}
	a := attrMap(call.Attributes)
	if a["gen_ai.provider.name"] != "anthropic" || a["gen_ai.usage.input_tokens"] != int64(10) || a["gen_ai.usage.output_tokens"] != int64(5) {
		t.Errorf("provider call span attributes: %v", a)
	}
	if p, _ := gotParent.Load().(string); !strings.Contains(p, call.SpanContext.SpanID().String()) {
		t.Errorf("provider got traceparent %q, want span %s", p, call.SpanContext.SpanID())
	}
}
