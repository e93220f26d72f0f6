package federation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// Upstreams is the part of *upstream.Pool that federation uses. Methods must
// be safe for concurrent use; errors name the server.
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

// Authorizer decides what the caller in ctx may see and use. The same
// decision filters tools/list and gates tools/call on every route (MCP,
// SSE, REST, single-server). Implementations must be safe for concurrent use
// and fast: AllowTool runs once per listed tool.
type Authorizer interface {
	// AllowServer reports whether the caller may use server at all (tools,
	// resources, prompts, completions).
	AllowServer(ctx context.Context, server string) bool
	// AllowTool reports whether the caller may list and call tool (the
	// upstream's original name) on server.
	AllowTool(ctx context.Context, server, tool string) bool
}

// CallHook runs around every tool call (budgets). BeforeToolCall returning an
// error refuses the call with that error; done, if not nil, is called once
// with the outcome.
type CallHook interface {
	BeforeToolCall(ctx context.Context, server, tool string) (done func(*mcp.CallToolResult, error), err error)
}

// Server is one registered upstream as federation sees it.
type Server struct {
	// ID is the registry id (REST callers may name a server by it); Name is
	// the routing name, unique.
	ID, Name, Description string
	// AllowedTools, if not empty, limits the server's tools to these
	// upstream names, for listing and calling.
	AllowedTools []string
	// ToolNameToDisplayName maps upstream tool names to the name shown on
	// single-server routes and used as the tool part of prefixed names.
	ToolNameToDisplayName map[string]string
	// ToolNameToDescription overrides tool descriptions.
	ToolNameToDescription map[string]string
	// PerCaller marks a server reached with each caller's own credentials:
	// its lists are fetched with the caller's context and cached per
	// (server, principal), never shared between callers (see percaller.go).
	PerCaller bool
}

// Config configures a Federation. Zero values are the documented defaults.
type Config struct {
	// Upstreams serves the upstream calls. Required.
	Upstreams Upstreams
	// Logger receives missing-upstream and error logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Authorizer filters servers and tools on every path. If nil, all are allowed.
	Authorizer Authorizer
	// CallHook runs around each tool call. If nil, none.
	CallHook CallHook
	// Principal names who is calling; sessions are bound to it. If nil, or
	// when it returns "", the caller is the anonymous principal.
	Principal func(ctx context.Context) string
	// ListTimeout bounds how long a list waits for each upstream. Zero means 5s.
	ListTimeout time.Duration
	// CacheTTL is how old a cached list may get before it is refreshed in the
	// background (lists are also refreshed on list_changed and SetServers).
	// Zero means 5m.
	CacheTTL time.Duration
	// CallerCacheSize bounds how many (per-caller server, principal) list
	// sets are cached; the least recently used go first. Zero means 10000.
	// They expire after CacheTTL.
	CallerCacheSize int
	// SessionIdleTTL expires idle 2025-era sessions. Zero means 30m.
	SessionIdleTTL time.Duration
	// SessionMaxAge bounds a session's whole life, on every replica. Zero
	// means 24h.
	SessionMaxAge time.Duration
	// AllowedOrigins lists browser origins allowed besides same-host ones
	// ("*" allows any). Requests without Origin are always allowed.
	AllowedOrigins []string
	// MaxBodyBytes limits request bodies. Zero means 4 MiB.
	MaxBodyBytes int64
	// Name and Version are the serverInfo of aggregate routes. Empty means
	// "toolgate" and "dev".
	Name, Version string
	// SessionKey signs session IDs so any replica can verify them. If empty,
	// a random key is used (sessions then do not survive a restart or move
	// between replicas).
	SessionKey []byte
	// OnSession is called with +1 when an MCP session (2025-era streamable
	// HTTP or SSE) starts and -1 when it ends, for metrics. If nil, nothing.
	OnSession func(delta int)
	// OnListCache is called on every cached list lookup: hit is true when a
	// fetched list was served without waiting. If nil, nothing.
	OnListCache func(hit bool)
	// TracerProvider, if set, traces tool calls (tracing.go). If nil, none.
	TracerProvider trace.TracerProvider
}

// Tool is a federated tool as shown to a caller.
type Tool struct {
	// Tool is the definition shown downstream (Name is the federated name;
	// _meta carries MetaServer and MetaName). Its schemas are pre-encoded in
	// RawInputSchema and RawOutputSchema (json.Marshal(Tool) gives the wire
	// form); InputSchema and OutputSchema are empty.
	Tool mcp.Tool
	// Server is the upstream server name and Original its tool name.
	Server, Original string

	src toolSrc // the view it was listed from (fastlist.go)
}

// Errors returned by the REST helpers.
var (
	// ErrUnknownTool: no tool of that name is visible to the caller.
	ErrUnknownTool = errors.New("unknown tool")
	// ErrUnknownServer: no server of that name or id is visible to the caller.
	ErrUnknownServer = errors.New("unknown MCP server")
)

// Federation serves the union of the upstreams over MCP and REST. Its
// methods are safe for concurrent use.
type Federation struct {
	cfg         Config
	up          Upstreams
	log         *slog.Logger
	listTimeout time.Duration
	cacheTTL    time.Duration
	retryAfter  time.Duration
	maxBody     int64

	reg atomic.Pointer[registry]
	mu  sync.Mutex // serializes SetServers

	callerMu sync.Mutex   // makes get-or-add on callers atomic
	callers  *callerCache // lists of PerCaller servers, per principal

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mcp       *server.MCPServer
	http      *server.StreamableHTTPServer
	sse       *server.SSEServer
	sessions  *sessions
	dispatch  string // internal name of the one registered tool/prompt/resource
	handler   http.Handler
	slowList  atomic.Bool   // tests: tools/list without the fast encoding (fastlist.go)
	fastLists atomic.Uint64 // tools/list responses written with the fast encoding

	subscriber Subscriber // nil: resource subscriptions are not offered
	subs       *subscriptions
	tracer     trace.Tracer // nil: tool calls are not traced
}

// New validates cfg and returns a Federation. It makes no network calls; the
// background refresher it starts does nothing until servers are set.
func New(cfg Config) (*Federation, error) {
	if cfg.Upstreams == nil {
		return nil, errors.New("federation: Config.Upstreams is required")
	}
	f := &Federation{cfg: cfg, up: cfg.Upstreams, log: cfg.Logger}
	if cfg.TracerProvider != nil {
		f.tracer = cfg.TracerProvider.Tracer("github.com/toolgate/toolgate/gateway/federation")
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.listTimeout = orDefault(cfg.ListTimeout, 5*time.Second)
	f.cacheTTL = orDefault(cfg.CacheTTL, 5*time.Minute)
	f.retryAfter = max(2*f.listTimeout, 10*time.Second)
	size := cfg.CallerCacheSize
	if size <= 0 {
		size = 10000
	}
	f.callers = newCallerCache(size, f.cacheTTL)
	f.maxBody = cfg.MaxBodyBytes
	if f.maxBody <= 0 {
		f.maxBody = 4 << 20
	}
	if f.cfg.Name == "" {
		f.cfg.Name = "toolgate"
	}
	if f.cfg.Version == "" {
		f.cfg.Version = "dev"
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("federation: session key: %w", err)
		}
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	f.dispatch = "toolgate.dispatch." + hex.EncodeToString(nonce[:])
	f.reg.Store(&registry{byName: map[string]*serverState{}, byID: map[string]*serverState{}})
	f.base, f.cancel = context.WithCancel(context.Background())
	f.sessions = newSessions(key, orDefault(cfg.SessionMaxAge, 24*time.Hour), f.principal)
	f.subs = newSubscriptions()
	if sub, ok := cfg.Upstreams.(Subscriber); ok {
		f.subscriber = sub
		sub.OnResourceUpdated(f.resourceUpdated)
		f.sessions.onEnd = func(id string) { f.sessionEnded(id, false) }
	}
	f.buildMCP()
	f.buildHTTP(orDefault(cfg.SessionIdleTTL, 30*time.Minute))
	f.wg.Add(1)
	go f.refresher()
	return f, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (f *Federation) principal(ctx context.Context) string {
	if f.cfg.Principal == nil {
		return ""
	}
	return f.cfg.Principal(ctx)
}

// SetServers replaces the registry (call after pool.Update). Servers that
// stay keep their caches; every server's lists are refreshed in the
// background, and downstream clients are told the lists changed.
func (f *Federation) SetServers(servers []Server) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.reg.Load()
	reg := &registry{byName: make(map[string]*serverState, len(servers)), byID: make(map[string]*serverState, len(servers))}
	for _, s := range servers {
		if s.Name == "" || reg.byName[s.Name] != nil {
			f.log.Warn("federation: skipping server with empty or duplicate name", "server", s.Name)
			continue
		}
		lists := &serverLists{}
		if prev := old.byName[s.Name]; prev != nil {
			lists = prev.lists
		}
		st := newServerState(s, lists)
		reg.byName[s.Name] = st
		if s.ID != "" {
			reg.byID[s.ID] = st
		}
		reg.order = append(reg.order, st)
	}
	slices.SortFunc(reg.order, func(a, b *serverState) int { return strings.Compare(a.cfg.Name, b.cfg.Name) })
	f.reg.Store(reg)
	f.forgetServer("") // per-caller lists are fetched again on demand

	var pending []<-chan struct{}
	for _, st := range reg.order {
		if st.cfg.PerCaller {
			continue
		}
		env, bg := f.env(st), context.Background()
		pending = append(pending,
			st.lists.tools.refresh(env, f.fetchTools(bg, st)),
			st.lists.prompts.refresh(env, f.fetchPrompts(bg, st)),
			st.lists.resources.refresh(env, f.fetchResources(bg, st)),
			st.lists.templates.refresh(env, f.fetchTemplates(bg, st)))
	}
	f.afterRefresh(pending, mcp.MethodNotificationToolsListChanged,
		mcp.MethodNotificationResourcesListChanged, mcp.MethodNotificationPromptsListChanged)
}

// ListChanged refreshes server's list for an upstream list_changed
// notification (method is notifications/{tools,resources,prompts}/list_changed),
// then forwards the notification to downstream clients. Wire it to
// upstream.Config.OnListChanged.
func (f *Federation) ListChanged(serverName, method string) {
	st := f.reg.Load().byName[serverName]
	if st == nil {
		return
	}
	if st.cfg.PerCaller {
		// Which caller's list changed is not known: every caller's lists
		// of the server are fetched again on their next request.
		switch m := mcp.MCPMethod(method); m {
		case mcp.MethodNotificationToolsListChanged, mcp.MethodNotificationPromptsListChanged,
			mcp.MethodNotificationResourcesListChanged:
			f.forgetServer(serverName)
			f.afterRefresh(nil, m)
		}
		return
	}
	env, bg := f.env(st), context.Background()
	var pending []<-chan struct{}
	switch mcp.MCPMethod(method) {
	case mcp.MethodNotificationToolsListChanged:
		pending = append(pending, st.lists.tools.refresh(env, f.fetchTools(bg, st)))
	case mcp.MethodNotificationPromptsListChanged:
		pending = append(pending, st.lists.prompts.refresh(env, f.fetchPrompts(bg, st)))
	case mcp.MethodNotificationResourcesListChanged:
		pending = append(pending, st.lists.resources.refresh(env, f.fetchResources(bg, st)),
			st.lists.templates.refresh(env, f.fetchTemplates(bg, st)))
	default:
		return
	}
	f.afterRefresh(pending, mcp.MCPMethod(method))
}

// afterRefresh waits (in the background) for the refreshes, then sends the
// list_changed notifications downstream.
func (f *Federation) afterRefresh(pending []<-chan struct{}, methods ...mcp.MCPMethod) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for _, ch := range pending {
			select {
			case <-ch:
			case <-f.base.Done():
				return
			}
		}
		for _, m := range methods {
			f.mcp.SendNotificationToAllClients(string(m), nil)
		}
	}()
}

// Handler serves /mcp, /mcp/{server}, /mcp/a,b, /{server}/mcp (streamable
// HTTP, both protocol generations) and the legacy SSE routes /mcp/sse and
// /mcp/sse/messages. It expects the gateway's authentication to have run.
func (f *Federation) Handler() http.Handler { return f.handler }

// ListTools lists the caller's tools on servers (names or ids; all when
// empty) with aggregate (prefixed) names, and the servers whose list did not
// arrive within the list deadline.
func (f *Federation) ListTools(ctx context.Context, servers []string) ([]Tool, []string, error) {
	sc, err := f.restScope(servers)
	if err != nil {
		return nil, nil, err
	}
	tools, missing, _ := f.listTools(ctx, sc)
	return tools, missing, nil
}

func (f *Federation) restScope(servers []string) (scope, error) {
	if len(servers) == 0 {
		return scope{}, nil
	}
	reg := f.reg.Load()
	sc := scope{servers: make([]string, 0, len(servers))}
	for _, s := range servers {
		st := reg.byName[s]
		if st == nil {
			st = reg.byID[s]
		}
		if st == nil {
			return scope{}, fmt.Errorf("%w %q", ErrUnknownServer, s)
		}
		sc.servers = append(sc.servers, st.cfg.Name)
	}
	return sc, nil
}

// CallTool calls a tool by its aggregate (prefixed) name. An unknown or
// unauthorized name yields ErrUnknownTool.
func (f *Federation) CallTool(ctx context.Context, name string, args map[string]any) (*mcp.CallToolResult, error) {
	return f.CallServerTool(ctx, "", name, args)
}

// CallServerTool calls a tool on one server (name or id), by the tool's
// plain or prefixed name; with server empty it is CallTool.
func (f *Federation) CallServerTool(ctx context.Context, server, name string, args map[string]any) (*mcp.CallToolResult, error) {
	sc := scope{}
	if server != "" {
		s, err := f.restScope([]string{server})
		if err != nil {
			return nil, err
		}
		sc = scope{servers: s.servers, single: s.servers[0]}
	}
	ref, ok := f.resolveTool(ctx, sc, name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTool, name)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = ref.original
	req.Params.Arguments = args
	return f.call(ctx, ref, req, nil)
}

// call runs one upstream tool call through the CallHook.
func (f *Federation) call(ctx context.Context, ref toolRef, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error) {
	if ref.err != nil {
		return nil, ref.err // the caller must authorize the upstream first
	}
	server := ref.st.cfg.Name
	var done func(*mcp.CallToolResult, error)
	if f.cfg.CallHook != nil {
		var err error
		done, err = f.cfg.CallHook.BeforeToolCall(ctx, server, ref.original)
		if err != nil {
			return nil, err
		}
		if done != nil {
			defer func() {
				if p := recover(); p != nil {
					done(nil, fmt.Errorf("tool call panicked: %v", p)) // release what the hook holds
					panic(p)
				}
			}()
		}
	}
	tctx, end := f.traceUpstreamCall(ctx, server, &req)
	res, err := f.up.CallTool(tctx, server, req, obs)
	end(res, err)
	if done != nil {
		done(res, err)
	}
	if err != nil {
		if _, ok := authorizationRequired(err); ok {
			// The caller's credential went away (revoked, refresh refused):
			// their cached lists of the server go too.
			if ref.st.cfg.PerCaller {
				f.forgetServerCaller(ctx, ref.st)
			}
			return nil, err
		}
		f.log.Warn("upstream tool call failed", "server", server, "tool", ref.original, "err", err)
		return nil, err
	}
	return res, nil
}

// Close stops background work and closes downstream sessions.
func (f *Federation) Close() error {
	f.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.http.Shutdown(ctx)
	f.sse.CloseSessions()
	f.wg.Wait()
	// expirable.LRU (v2.0.7) cannot be stopped: its expiry goroutine outlives
	// Close, but holds nothing once purged.
	f.forgetServer("")
	return nil
}

// newURITemplate parses raw as an RFC 6570 template.
func newURITemplate(raw string) (*mcp.URITemplate, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	t := &mcp.URITemplate{}
	if err := t.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return t, nil
}
