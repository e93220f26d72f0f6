package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// ErrUnknownServer is returned (wrapped with the server name) when a method
// names a server that is not in the pool.
var ErrUnknownServer = errors.New("unknown upstream server")

// Spec describes one upstream MCP server.
type Spec struct {
	// Name identifies the server in the pool and in errors.
	Name string
	// URL is the upstream endpoint: the streamable HTTP endpoint (e.g.
	// http://host/mcp) or the SSE endpoint (e.g. http://host/sse).
	URL string
	// Transport is "http" (streamable HTTP) or "sse". Empty means "http".
	Transport string
	// StaticHeaders are sent on every request (static_headers).
	StaticHeaders map[string]string
	// AuthHeaders are the configured credentials rendered as headers; they
	// beat StaticHeaders on a name clash (compared case-insensitively).
	AuthHeaders map[string]string
	// ForwardHeaders names caller headers (from WithCallerHeaders) to
	// forward upstream (extra_headers). They have the lowest precedence and
	// never include hop-by-hop headers, Cookie, Authorization,
	// x-toolgate-api-key, x-litellm-api-key, Mcp-Session-Id or Host.
	ForwardHeaders []string
	// CallTimeout bounds one tools/call (and other non-list requests).
	// Zero means Config.CallTimeout.
	CallTimeout time.Duration
}

// Config configures a Pool. The zero value is usable.
type Config struct {
	// Logger receives connection events. If nil, logs are discarded.
	Logger *slog.Logger
	// HTTPClient is used for every upstream request. If nil, a client with
	// a private http.Transport is used.
	HTTPClient *http.Client
	// CallTimeout bounds a call when Spec.CallTimeout is zero. Zero means 60s.
	CallTimeout time.Duration
	// ListTimeout bounds a list request (tools, resources, templates,
	// prompts) and each connection attempt. Zero means 5s.
	ListTimeout time.Duration
	// OnListChanged is called, on its own goroutine, when an upstream sends
	// notifications/{tools,resources,prompts}/list_changed. If nil, those
	// notifications are dropped.
	OnListChanged func(server, method string)
	// OnHealth is called, on its own goroutine, when a server's health
	// changes. If nil, nothing is called.
	OnHealth func(server string, healthy bool, err error)
}

// Health is the state of one upstream as last observed.
type Health struct {
	// Healthy is true only when the last tools/list succeeded.
	Healthy bool
	// Err is the last error, empty when healthy.
	Err string
	// CheckedAt is when the last connection attempt or list finished.
	CheckedAt time.Time
	// Tools is the number of tools the last successful list returned.
	Tools int
}

// Observer routes a call's side traffic back to the downstream caller. Any
// field may be nil.
type Observer struct {
	// OnNotification receives notifications/progress (with the caller's
	// original progress token restored) and notifications/message for the
	// call. It is called on the upstream reader goroutine: it must not block.
	OnNotification func(mcp.JSONRPCNotification)
	// Sampling answers sampling/createMessage requests the upstream sends
	// while the call is in flight.
	Sampling func(ctx context.Context, r mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
	// Elicitation answers elicitation/create requests the upstream sends
	// while the call is in flight.
	Elicitation func(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error)
}

// Pool holds one mcp-go client per upstream server (per credential),
// reused across callers. All methods are safe for concurrent use.
type Pool struct {
	cfg Config
}

// New returns a Pool. It makes no network calls; Update connects.
func New(cfg Config) *Pool {
	return &Pool{cfg: cfg}
}

// Update reconciles the pool with specs: new servers are connected in the
// background, changed ones replaced, removed ones closed; unchanged servers
// keep their clients.
func (p *Pool) Update(specs []Spec) {}

// ListTools lists every tool of server (all pages).
func (p *Pool) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	return nil, errors.New("not implemented")
}

// CallTool calls a tool on server. obs may be nil.
func (p *Pool) CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *Observer) (*mcp.CallToolResult, error) {
	return nil, errors.New("not implemented")
}

// ListResources lists every resource of server (all pages).
func (p *Pool) ListResources(ctx context.Context, server string) ([]mcp.Resource, error) {
	return nil, errors.New("not implemented")
}

// ListResourceTemplates lists every resource template of server.
func (p *Pool) ListResourceTemplates(ctx context.Context, server string) ([]mcp.ResourceTemplate, error) {
	return nil, errors.New("not implemented")
}

// ReadResource reads a resource from server.
func (p *Pool) ReadResource(ctx context.Context, server string, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return nil, errors.New("not implemented")
}

// ListPrompts lists every prompt of server.
func (p *Pool) ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error) {
	return nil, errors.New("not implemented")
}

// GetPrompt gets a prompt from server.
func (p *Pool) GetPrompt(ctx context.Context, server string, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	return nil, errors.New("not implemented")
}

// Complete asks server for argument completions.
func (p *Pool) Complete(ctx context.Context, server string, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	return nil, errors.New("not implemented")
}

// Health reports every server's state, keyed by name.
func (p *Pool) Health() map[string]Health { return nil }

// Close closes every client and stops background work.
func (p *Pool) Close() error { return nil }

type ctxKey int

const (
	callerHeadersKey ctxKey = iota
	credentialKey
)

// WithCallerHeaders returns ctx carrying the downstream request's headers,
// from which Spec.ForwardHeaders and x-request-id are forwarded.
func WithCallerHeaders(ctx context.Context, h http.Header) context.Context {
	return context.WithValue(ctx, callerHeadersKey, h)
}
