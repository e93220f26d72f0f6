package gateway

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads and writes W3C trace context (traceparent, tracestate) and baggage.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// traced wraps the whole handler in a server span per request when tracing is on. A
// caller's traceparent is continued; the span is named after the matched route once it is
// known (see accessLog).
func (s *Server) traced(h http.Handler) http.Handler {
	if s.cfg.TracerProvider == nil {
		return h
	}
	return otelhttp.NewHandler(h, "toolgate",
		otelhttp.WithTracerProvider(s.cfg.TracerProvider),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// tracedTransport wraps an upstream transport so that every upstream request is a client
// span of the downstream request's trace and carries its traceparent.
func (s *Server) tracedTransport(rt http.RoundTripper) http.RoundTripper {
	if s.cfg.TracerProvider == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(s.cfg.TracerProvider),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "upstream " + r.Method }),
	)
}

// nameSpan names the request's span after its route and tags it with the request id.
func nameSpan(r *http.Request, route, requestID string) {
	sp := trace.SpanFromContext(r.Context())
	if !sp.IsRecording() {
		return
	}
	sp.SetName(r.Method + " " + route)
	sp.SetAttributes(attribute.String("http.route", route), attribute.String("toolgate.request_id", requestID))
}

// traceID returns the request's trace id, or "" when it is not traced.
func traceID(r *http.Request) string {
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}
