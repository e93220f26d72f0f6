package llm

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Provider calls are traced after OpenTelemetry's GenAI conventions: one client span per
// attempt (so retries and fallbacks show as siblings), named "{operation} {model}", below
// the gateway's span for the request. Only trace context is sent to providers: a caller's
// baggage is not theirs to read.

// traceContext writes traceparent and tracestate into provider requests.
var traceContext propagation.TraceContext

// injectTrace adds the trace context of ctx to h; without a span in ctx (tracing off) it
// adds nothing.
func injectTrace(ctx context.Context, h http.Header) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceContext.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// genAIOperation is gen_ai.operation.name for each call kind. Images have no name in the
// conventions; theirs are custom values, as the conventions allow.
var genAIOperation = map[string]string{callChat: "chat", callMessages: "chat", callResponses: "chat", callEmbeddings: "embeddings",
	callImages: "image_generation", callImageEdits: "image_edit", callCompletions: "text_completion"}

// genAIProvider is gen_ai.provider.name for the provider prefixes the conventions name;
// others are reported as their prefix.
var genAIProvider = map[string]string{"azure": "azure.ai.openai", "mistral": "mistral_ai", "xai": "x_ai"}

// startAttempt starts the span of one provider call for d. It returns ctx unchanged and a
// nil span when tracing is off.
func (r *Router) startAttempt(ctx context.Context, kind string, d *Deployment) (context.Context, trace.Span) {
	if r.tracer == nil {
		return ctx, nil
	}
	op := genAIOperation[kind]
	prov := genAIProvider[d.Provider]
	if prov == "" {
		prov = d.Provider
	}
	attrs := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", op),
		attribute.String("gen_ai.provider.name", prov),
		attribute.String("gen_ai.request.model", d.Model),
		attribute.String("toolgate.model_group", d.ModelName),
		attribute.String("toolgate.model_id", d.ID),
	}
	if host, port := endpointOf(d); host != "" {
		attrs = append(attrs, attribute.String("server.address", host))
		if port > 0 {
			attrs = append(attrs, attribute.Int("server.port", port))
		}
	}
	return r.tracer.Start(ctx, op+" "+d.Model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endpointOf returns the host and port d's calls go to.
func endpointOf(d *Deployment) (string, int) {
	base := d.APIBase
	switch {
	case base != "":
	case d.Provider == "anthropic":
		base = anthropicBase
	case defaultBases[d.Provider] != "":
		base = defaultBases[d.Provider]
	default:
		base = defaultBases["openai"]
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", 0
	}
	port, _ := strconv.Atoi(u.Port())
	if port == 0 {
		switch u.Scheme {
		case "https":
			port = 443
		case "http":
			port = 80
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return host, port
}

// spanFailed marks an attempt's span failed with a low-cardinality error.type: the
// provider's HTTP status, "timeout", "cancelled", or "_OTHER". The provider's message is
// not recorded: it may quote the request.
func spanFailed(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	typ := "_OTHER"
	var ue *UpstreamError
	switch {
	case errors.Is(err, context.Canceled):
		typ = "cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		typ = "timeout"
	case errors.As(err, &ue) && ue.Status == http.StatusRequestTimeout:
		typ = "timeout"
	case errors.As(err, &ue) && ue.Status != 0:
		typ = strconv.Itoa(ue.Status)
	}
	sp.SetAttributes(attribute.String("error.type", typ))
	sp.SetStatus(codes.Error, typ)
}

// record puts an answered attempt's usage and spend on its span; a stream that broke off
// (ok false) marks it failed.
func (a *attempt) record(u Usage, spend float64, ok bool) {
	if a.span == nil {
		return
	}
	a.span.SetAttributes(
		attribute.Int64("gen_ai.usage.input_tokens", u.PromptTokens),
		attribute.Int64("gen_ai.usage.output_tokens", u.CompletionTokens),
		attribute.Float64("toolgate.spend", spend),
	)
	if !ok {
		a.span.SetAttributes(attribute.String("error.type", "stream_interrupted"))
		a.span.SetStatus(codes.Error, "stream_interrupted")
	}
}
