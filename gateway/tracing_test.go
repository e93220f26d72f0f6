package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/store"
)

// TestTraceReachesUpstream: with a tracer provider, a tools/call through /mcp is one trace:
// the gateway's server span continues the caller's traceparent, the upstream request is a
// client span below it, and the upstream receives a traceparent of the same trace.
func TestTraceReachesUpstream(t *testing.T) {
	var mu sync.Mutex
	var upstreamParents []string // traceparent of each tools/call the upstream received
	s := server.NewMCPServer("traced", "1")
	s.AddTool(mcp.NewTool("echo"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	mcpHandler := server.NewStreamableHTTPServer(s)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if r.Method == http.MethodPost && bytes.Contains(body, []byte(`"tools/call"`)) {
			mu.Lock()
			upstreamParents = append(upstreamParents, r.Header.Get("Traceparent"))
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
	parents := append([]string(nil), upstreamParents...)
	mu.Unlock()
	if len(parents) != 1 || !strings.HasPrefix(parents[0], "00-"+callerTrace+"-") {
		t.Fatalf("upstream tools/call traceparent: got %q, want one in trace %s", parents, callerTrace)
	}
	upstreamParentSpan := strings.Split(parents[0], "-")[2]

	// The downstream server span ends (and is exported) after the client has its answer:
	// wait until the upstream call's span and its parent are both there.
	var spans tracetest.SpanStubs
	waitFor(t, "the upstream call span and its parent", func() bool {
		spans = exp.GetSpans()
		ids := map[trace.SpanID]bool{}
		for _, sp := range spans {
			ids[sp.SpanContext.SpanID()] = true
		}
		for _, sp := range spans {
			if sp.SpanContext.SpanID().String() == upstreamParentSpan {
				return ids[sp.Parent.SpanID()]
			}
		}
		return false
	})
	var serverSpan, clientSpan *tracetest.SpanStub
	for i := range spans {
		sp := &spans[i]
		if sp.SpanContext.TraceID().String() != callerTrace {
			continue
		}
		switch sp.SpanKind {
		case trace.SpanKindServer:
			if sp.Name == "POST class:mcp" {
				serverSpan = sp
			}
		case trace.SpanKindClient:
			if sp.SpanContext.SpanID().String() == upstreamParentSpan {
				clientSpan = sp
			}
		}
	}
	if serverSpan == nil || clientSpan == nil {
		var names []string
		for _, sp := range spans {
			names = append(names, sp.Name+"/"+sp.SpanKind.String()+"/"+sp.SpanContext.TraceID().String())
		}
		t.Fatalf("want a server span and the upstream client span in trace %s; got %v", callerTrace, names)
	}
	// The client span hangs below the tools/call request's server span.
	var callSpan *tracetest.SpanStub
	for i := range spans {
		if spans[i].SpanContext.SpanID() == clientSpan.Parent.SpanID() {
			callSpan = &spans[i]
		}
	}
	if callSpan == nil || callSpan.SpanKind != trace.SpanKindServer || callSpan.Name != "POST class:mcp" {
		t.Errorf("upstream span's parent: got %+v, want the downstream POST server span", callSpan)
	}
}
