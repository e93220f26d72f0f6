package federation

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// Upstreams is the part of *upstream.Pool that federation uses. Methods are
// safe for concurrent use; errors name the server, and a server that is not
// registered yields an error wrapping upstream.ErrUnknownServer.
type Upstreams interface {
	ListTools(ctx context.Context, server string) ([]mcp.Tool, error)
	CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error)
	ListResources(ctx context.Context, server string) ([]mcp.Resource, error)
	ListResourceTemplates(ctx context.Context, server string) ([]mcp.ResourceTemplate, error)
	ReadResource(ctx context.Context, server string, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error)
	ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error)
	GetPrompt(ctx context.Context, server string, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error)
	Complete(ctx context.Context, server string, req mcp.CompleteRequest) (*mcp.CompleteResult, error)
}

var _ Upstreams = (*upstream.Pool)(nil)

// Authorizer decides what the caller in ctx may see and use. Implementations
// must be safe for concurrent use and fast: they run for every listed item.
type Authorizer interface {
	// AllowServer reports whether the caller may use server at all.
	AllowServer(ctx context.Context, server string) bool
	// AllowTool reports whether the caller may list and call tool (the
	// upstream's original name) on server.
	AllowTool(ctx context.Context, server, tool string) bool
}

// CallHook runs around every tool call (budgets). BeforeToolCall returning an
// error refuses the call; done, if not nil, is called with the outcome.
type CallHook interface {
	BeforeToolCall(ctx context.Context, server, tool string) (done func(*mcp.CallToolResult, error), err error)
}

// Server is one registered upstream as federation sees it.
type Server struct {
	// ID is the registry id; Name is the routing name (unique, [A-Za-z0-9_]).
	ID, Name, Description string
	// AllowedTools, if not empty, limits the server's tools to these
	// upstream names.
	AllowedTools []string
	// ToolNameToDisplayName maps upstream tool names to the name shown on
	// single-server routes (and used as the tool part of prefixed names).
	ToolNameToDisplayName map[string]string
	// ToolNameToDescription overrides tool descriptions.
	ToolNameToDescription map[string]string
}

// Config configures a Federation.
type Config struct {
	// Upstreams serves the upstream calls. Required.
	Upstreams Upstreams
	// Logger receives missing-upstream and error logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Authorizer filters servers and tools for every path. If nil, all are allowed.
	Authorizer Authorizer
	// CallHook runs around each tool call. If nil, none.
	CallHook CallHook
	// Principal names who is calling; sessions are bound to it. If nil, every
	// caller is the same anonymous principal.
	Principal func(ctx context.Context) string
	// ListTimeout bounds each upstream's list. Zero means 5s.
	ListTimeout time.Duration
	// CacheTTL is how long a list is served before a background refresh.
	// Zero means 5m.
	CacheTTL time.Duration
	// SessionIdleTTL expires idle 2025-era sessions. Zero means 30m.
	SessionIdleTTL time.Duration
	// AllowedOrigins lists browser origins allowed besides same-host ones.
	AllowedOrigins []string
	// MaxBodyBytes limits request bodies. Zero means 4 MiB.
	MaxBodyBytes int64
	// Name and Version are the serverInfo of aggregate routes. Empty means
	// "toolgate" and "dev".
	Name, Version string
	// SessionKey signs session IDs so any replica can verify them. If empty,
	// a random key is generated (sessions then do not survive a restart or
	// move between replicas).
	SessionKey []byte
}

// Tool is a federated tool as shown to a caller.
type Tool struct {
	// Tool is the definition shown downstream (Name is the federated name).
	Tool mcp.Tool
	// Server is the upstream server name and Original its tool name.
	Server, Original string
}

// Federation serves the union of the upstreams over MCP and REST.
type Federation struct {
	cfg Config
}

// New validates cfg and returns a Federation. It makes no network calls.
func New(cfg Config) (*Federation, error) {
	if cfg.Upstreams == nil {
		return nil, errors.New("federation: Config.Upstreams is required")
	}
	return &Federation{cfg: cfg}, nil
}

// SetServers replaces the registry (call after pool.Update).
func (f *Federation) SetServers(servers []Server) {}

// ListChanged records that server's list for method changed.
func (f *Federation) ListChanged(server, method string) {}

// Handler serves /mcp, /mcp/{a,b}, /{server}/mcp and the SSE routes.
func (f *Federation) Handler() http.Handler { return http.NotFoundHandler() }

// ListTools lists the caller's tools on servers (all when empty), with the
// servers that did not answer in time.
func (f *Federation) ListTools(ctx context.Context, servers []string) ([]Tool, []string, error) {
	return nil, nil, nil
}

// CallTool calls a tool by its federated name.
func (f *Federation) CallTool(ctx context.Context, name string, args map[string]any) (*mcp.CallToolResult, error) {
	return nil, errors.New("not implemented")
}

// Close stops background work.
func (f *Federation) Close() error { return nil }
