package federation

import (
	"context"
	"errors"
	"strconv"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tool calls are traced after OpenTelemetry's MCP conventions: the downstream tools/call is
// a server span and the upstream call a client span below it, both named "tools/call
// {tool}". Trace context travels in params._meta as traceparent, tracestate and baggage
// (SEP-414): a caller's is the server span's parent (the HTTP request's span is linked),
// and the client span's goes to the upstream, replacing the caller's. With tracing off,
// _meta passes through as it came.

// metaPropagator reads and writes trace context in params._meta.
var metaPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// metaCarrier is params._meta's fields as a propagation carrier.
type metaCarrier map[string]any

func (m metaCarrier) Get(key string) string { s, _ := m[key].(string); return s }
func (m metaCarrier) Set(key, value string) { m[key] = value }
func (m metaCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// spanEnd ends a tool call's span with its outcome.
type spanEnd func(*mcp.CallToolResult, error)

func noSpan(*mcp.CallToolResult, error) {}

// traceServerCall starts the server span of a downstream tools/call of tool.
func (f *Federation) traceServerCall(ctx context.Context, meta *mcp.Meta, tool string) (context.Context, spanEnd) {
	if f.tracer == nil {
		return ctx, noSpan
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(toolAttrs(tool)...)}
	if meta != nil && meta.AdditionalFields["traceparent"] != nil {
		if pctx := metaPropagator.Extract(ctx, metaCarrier(meta.AdditionalFields)); trace.SpanContextFromContext(pctx).IsValid() {
			if ambient := trace.SpanContextFromContext(ctx); ambient.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: ambient}))
			}
			ctx = pctx
		}
	}
	if sess := server.ClientSessionFromContext(ctx); sess != nil && sess.SessionID() != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("mcp.session.id", sess.SessionID())))
	}
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.ProtocolVersion != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("mcp.protocol.version", info.ProtocolVersion)))
	}
	ctx, sp := f.tracer.Start(ctx, "tools/call "+tool, opts...)
	return ctx, func(res *mcp.CallToolResult, err error) { endToolSpan(sp, res, err) }
}

// traceUpstreamCall starts the client span of the upstream call req to server, and puts
// its trace context in req's _meta.
func (f *Federation) traceUpstreamCall(ctx context.Context, server string, req *mcp.CallToolRequest) (context.Context, spanEnd) {
	if f.tracer == nil {
		return ctx, noSpan
	}
	ctx, sp := f.tracer.Start(ctx, "tools/call "+req.Params.Name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(append(toolAttrs(req.Params.Name), attribute.String("toolgate.mcp_server", server))...))
	meta := &mcp.Meta{AdditionalFields: map[string]any{}}
	if m := req.Params.Meta; m != nil {
		meta.ProgressToken = m.ProgressToken
		for k, v := range m.AdditionalFields {
			meta.AdditionalFields[k] = v
		}
	}
	delete(meta.AdditionalFields, "tracestate") // the caller's, if any, is not the gateway span's
	metaPropagator.Inject(ctx, metaCarrier(meta.AdditionalFields))
	req.Params.Meta = meta
	return ctx, func(res *mcp.CallToolResult, err error) { endToolSpan(sp, res, err) }
}

func toolAttrs(tool string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("mcp.method.name", "tools/call"),
		attribute.String("gen_ai.tool.name", tool),
		attribute.String("gen_ai.operation.name", "execute_tool"),
	}
}

// jsonRPCCodes maps mcp-go's errors for JSON-RPC error answers back to their codes.
var jsonRPCCodes = []struct {
	err  error
	code int
}{
	{mcp.ErrParseError, mcp.PARSE_ERROR}, {mcp.ErrInvalidRequest, mcp.INVALID_REQUEST},
	{mcp.ErrMethodNotFound, mcp.METHOD_NOT_FOUND}, {mcp.ErrInvalidParams, mcp.INVALID_PARAMS},
	{mcp.ErrInternalError, mcp.INTERNAL_ERROR}, {mcp.ErrRequestInterrupted, mcp.REQUEST_INTERRUPTED},
	{mcp.ErrResourceNotFound, mcp.RESOURCE_NOT_FOUND},
}

// endToolSpan records a tool call's outcome: error.type is "tool_error" for a result with
// isError, the JSON-RPC code of an error answer, "timeout" or "cancelled", or "_OTHER"
// (the gateway's own refusals, transport failures).
func endToolSpan(sp trace.Span, res *mcp.CallToolResult, err error) {
	defer sp.End()
	var typ, msg string
	switch {
	case err == nil && res != nil && res.IsError:
		typ = "tool_error"
	case err == nil:
		return
	case errors.Is(err, context.DeadlineExceeded):
		typ, msg = "timeout", err.Error()
	case errors.Is(err, context.Canceled):
		typ, msg = "cancelled", err.Error()
	default:
		typ, msg = "_OTHER", err.Error()
		for _, c := range jsonRPCCodes {
			if errors.Is(err, c.err) {
				typ = strconv.Itoa(c.code)
				sp.SetAttributes(attribute.String("rpc.response.status_code", typ))
				break
			}
		}
	}
	if len(msg) > 256 {
		msg = msg[:256]
	}
	sp.SetAttributes(attribute.String("error.type", typ))
	sp.SetStatus(codes.Error, msg)
}
