package llm_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/llm"
)

// TestProviderCallsTraced: with tracing on, each provider attempt is a client span of the
// caller's trace, after the GenAI conventions (a failed attempt and its retry are two
// spans), carrying usage and spend once answered, and the provider receives the attempt's
// own traceparent. A stream's span ends with the stream and carries its usage.
func TestProviderCallsTraced(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	up := newFakeOpenAI(t)
	up.fail = func(n int64) int {
		if n == 1 {
			return 503
		}
		return 0
	}
	one := 1
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}, tracer: tp,
		router: llm.RouterSettings{NumRetries: &one, RetryAfter: 0.001, AllowedFails: 10}})

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	resp, body := h.post("/v1/chat/completions", chat("gpt"), "Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2 (the failed attempt and its retry): %v", len(spans), spanNames(spans))
	}
	sent := up.traceparents()
	if len(sent) != 2 {
		t.Fatalf("provider saw %d calls, want 2", len(sent))
	}
	for i, sp := range spans {
		if sp.Name != "chat upstream-gpt" || sp.SpanKind != trace.SpanKindClient {
			t.Errorf("span %d: %q (%v), want client span \"chat upstream-gpt\"", i, sp.Name, sp.SpanKind)
		}
		if sp.SpanContext.TraceID().String() != callerTrace || sp.Parent.SpanID().String() != callerSpan {
			t.Errorf("span %d: trace %s parent %s, want the caller's %s / %s", i, sp.SpanContext.TraceID(), sp.Parent.SpanID(), callerTrace, callerSpan)
		}
		if want := "00-" + callerTrace + "-" + sp.SpanContext.SpanID().String() + "-01"; sent[i] != want {
			t.Errorf("call %d carried traceparent %q, want its attempt's %q", i, sent[i], want)
		}
		attrs := attrMap(sp.Attributes)
		for k, v := range map[string]any{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
			"gen_ai.request.model": "upstream-gpt", "toolgate.model_group": "gpt", "server.address": "127.0.0.1"} {
			if attrs[k] != v {
				t.Errorf("span %d: %s = %v, want %v", i, k, attrs[k], v)
			}
		}
		if p, _ := attrs["server.port"].(int64); p == 0 || !strings.HasSuffix(up.URL, ":"+strconv.FormatInt(p, 10)) {
			t.Errorf("span %d: server.port %v, want the provider's port (%s)", i, attrs["server.port"], up.URL)
		}
	}
	failed, answered := spans[0], spans[1]
	if a := attrMap(failed.Attributes); a["error.type"] != "503" || failed.Status.Code != codes.Error {
		t.Errorf("failed attempt: error.type %v status %v, want 503 / Error", a["error.type"], failed.Status)
	}
	a := attrMap(answered.Attributes)
	if a["error.type"] != nil || answered.Status.Code == codes.Error {
		t.Errorf("answered attempt marked failed: %v %v", a["error.type"], answered.Status)
	}
	// 12 prompt and 8 completion tokens at 0.5 and 0.125 a token.
	if a["gen_ai.usage.input_tokens"] != int64(12) || a["gen_ai.usage.output_tokens"] != int64(8) || a["toolgate.spend"] != 7.0 {
		t.Errorf("answered attempt: usage %v/%v spend %v, want 12/8 and 7", a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], a["toolgate.spend"])
	}

	exp.Reset()
	resp, body = h.post("/v1/chat/completions", chat("gpt", "stream", true, "stream_options", map[string]any{"include_usage": true}),
		"Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("stream: status %d: %s", resp.StatusCode, body)
	}
	spans = exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("stream: got spans %v, want one", spanNames(spans))
	}
	if a := attrMap(spans[0].Attributes); a["gen_ai.usage.input_tokens"] != int64(12) || a["gen_ai.usage.output_tokens"] != int64(8) || spans[0].Status.Code == codes.Error {
		t.Errorf("stream span: usage %v/%v status %v, want 12/8 and not failed", a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], spans[0].Status)
	}
	if sent := up.traceparents(); !strings.Contains(sent[len(sent)-1], spans[0].SpanContext.SpanID().String()) {
		t.Errorf("stream call carried traceparent %q, want span %s", sent[len(sent)-1], spans[0].SpanContext.SpanID())
	}
}

// TestProviderCallsUntraced: without a tracer provider, a caller's traceparent does not
// reach the provider.
func TestProviderCallsUntraced(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	if resp, body := h.post("/v1/chat/completions", chat("gpt"), "Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if sent := up.traceparents(); len(sent) != 1 || sent[0] != "" {
		t.Errorf("provider got traceparents %q, want none", sent)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name)
	}
	return out
}
