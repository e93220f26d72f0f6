package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
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
	// Transport is "http" (streamable HTTP; also "streamable",
	// "streamable-http", "streamable_http") or "sse". Empty means "http".
	// Anything else makes every request fail (and the server unhealthy).
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
	// Protocol selects the protocol generation spoken to a streamable HTTP
	// upstream. "" (ProtocolLegacy) pins 2025-11-25 with the standalone GET
	// stream open (transport.WithContinuousListening), so that sampling,
	// elicitation and list_changed sent on it arrive; every mcp-go and TS SDK
	// server speaks it. ProtocolAuto lets mcp-go probe 2026-07-28
	// (server/discover) first and fall back to initialize; without the GET
	// stream, list_changed from a 2025-era upstream is not received.
	// SSE upstreams always speak the legacy protocol.
	Protocol string
	// NoHealthCheck stops the pool probing the server with its own client:
	// for servers every caller reaches with a credential of its own
	// (WithCredential, e.g. auth_type oauth2), where a credential-less probe
	// can only fail. Health then stays unchecked; idle credential clients
	// are still swept.
	NoHealthCheck bool
}

// Protocol generations for Spec.Protocol.
const (
	ProtocolLegacy = ""
	ProtocolAuto   = "auto"
)

// Config configures a Pool. The zero value is usable.
type Config struct {
	// Logger receives connection events. If nil, logs are discarded.
	Logger *slog.Logger
	// HTTPClient is used for every upstream request. It must not set a
	// Timeout (SSE and GET streams are long-lived; every request carries
	// its own deadline). If nil, a client with a private http.Transport is
	// used, and Close closes its idle connections.
	HTTPClient *http.Client
	// CallTimeout bounds a call when Spec.CallTimeout is zero. Zero means 60s.
	CallTimeout time.Duration
	// ListTimeout bounds a list request (tools, resources, templates,
	// prompts) and each connection attempt. Zero means 5s.
	ListTimeout time.Duration
	// OnListChanged is called when an upstream sends
	// notifications/{tools,resources,prompts}/list_changed. Callbacks
	// (OnListChanged and OnHealth) run in order on one pool goroutine, never
	// on an upstream reader: a slow one delays later ones, and Close waits
	// for the running one. If nil, those notifications are dropped.
	OnListChanged func(server, method string)
	// OnHealth is called when a server's health changes (and with its
	// first result), on the callback goroutine. If nil, nothing is called.
	OnHealth func(server string, healthy bool, err error)
	// HealthInterval is how often a healthy upstream is listed again.
	// Zero means 30s.
	HealthInterval time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to reach a
	// failing upstream (doubling, with jitter). Zero means 250ms and 30s.
	RetryMin, RetryMax time.Duration
	// UpstreamLogLevel, if set (e.g. "info"), is sent with logging/setLevel
	// (or per request on 2026-07-28) to upstreams that declare logging, so
	// that they send notifications/message. Empty leaves their default.
	UpstreamLogLevel string
	// CredentialIdleTTL closes per-credential clients (WithCredential) unused
	// for this long. Zero means 10 minutes.
	CredentialIdleTTL time.Duration
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

// Pool holds one mcp-go client per upstream server (and per credential, see
// WithCredential), reused across callers. All methods are safe for
// concurrent use.
type Pool struct {
	cfg            Config
	log            *slog.Logger
	hc             *http.Client
	ownHC          bool
	callTimeout    time.Duration
	listTimeout    time.Duration
	healthInterval time.Duration
	retryMin       time.Duration
	retryMax       time.Duration
	credTTL        time.Duration

	// ctx ends when the pool closes; every conn's ctx derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	notes  *notifier

	// wg counts background goroutines; wgMu guards stopping, set by Close
	// before it waits. It is a lock of its own (taken last, after Pool.mu
	// and conn.mu) so that goroutines can be started under either.
	wg       sync.WaitGroup
	wgMu     sync.Mutex
	stopping bool

	seq atomic.Uint64 // call sequence and progress tokens

	onUpdated atomic.Pointer[func(server, uri string)] // OnResourceUpdated

	mu      sync.Mutex
	closed  bool
	servers map[string]*entry
}

// entry is one configured server: its default client and any
// per-credential clients.
type entry struct {
	spec  Spec
	def   *conn
	creds map[string]*conn
}

// New returns a Pool. It makes no network calls; Update connects.
func New(cfg Config) *Pool {
	p := &Pool{
		cfg:            cfg,
		log:            cfg.Logger,
		hc:             cfg.HTTPClient,
		callTimeout:    orDefault(cfg.CallTimeout, 60*time.Second),
		listTimeout:    orDefault(cfg.ListTimeout, 5*time.Second),
		healthInterval: orDefault(cfg.HealthInterval, 30*time.Second),
		retryMin:       orDefault(cfg.RetryMin, 250*time.Millisecond),
		retryMax:       orDefault(cfg.RetryMax, 30*time.Second),
		credTTL:        orDefault(cfg.CredentialIdleTTL, 10*time.Minute),
		notes:          newNotifier(),
		servers:        make(map[string]*entry),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		// No client timeout: SSE and GET streams live long; every request
		// carries its own deadline.
		p.hc = &http.Client{Transport: tr}
		p.ownHC = true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.notes.run(p.ctx)
	}()
	return p
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// goTracked reserves a slot in the pool's WaitGroup for a goroutine the
// caller is about to start; it returns false once the pool is closed.
func (p *Pool) goTracked() bool {
	p.wgMu.Lock()
	defer p.wgMu.Unlock()
	if p.stopping {
		return false
	}
	p.wg.Add(1)
	return true
}

// Update reconciles the pool with specs: new servers are connected in the
// background, changed ones replaced (their callers in flight finish on the
// old client or fail with a closed-connection error), removed ones closed;
// unchanged servers keep their clients. Specs with an empty or duplicate
// name are ignored (the last one wins for duplicates).
func (p *Pool) Update(specs []Spec) {
	want := make(map[string]Spec, len(specs))
	for _, s := range specs {
		if s.Name != "" {
			want[s.Name] = s
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var drop []*conn
	for name, e := range p.servers {
		if s, ok := want[name]; !ok || !reflect.DeepEqual(s, e.spec) {
			drop = append(drop, e.conns()...)
			delete(p.servers, name)
		}
	}
	var start []*conn
	for name, s := range want {
		if _, ok := p.servers[name]; ok {
			continue
		}
		e := &entry{spec: s, creds: make(map[string]*conn)}
		e.def = newConn(p, key{server: name}, s)
		e.def.shared = true
		p.servers[name] = e
		start = append(start, e.def)
		p.wg.Add(1)
	}
	if len(drop) > 0 {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	for _, c := range start {
		go c.loop()
	}
	if len(drop) > 0 {
		go func() {
			defer p.wg.Done()
			closeAll(drop)
		}()
	}
}

// conns returns e's clients; the caller holds Pool.mu.
func (e *entry) conns() []*conn {
	return append([]*conn{e.def}, slices.Collect(maps.Values(e.creds))...)
}

// closeAll closes conns in parallel and waits.
func closeAll(conns []*conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.close()
		}()
	}
	wg.Wait()
}

// conn returns the client holder for server and the credential in ctx.
func (p *Pool) conn(ctx context.Context, server string) (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	e := p.servers[server]
	if e == nil {
		return nil, ErrUnknownServer
	}
	cr, ok := ctx.Value(credentialKey).(credential)
	if !ok {
		return e.def, nil
	}
	c := e.creds[cr.id]
	if c == nil {
		c = newConn(p, key{server: server, credential: cr.id}, e.spec)
		e.creds[cr.id] = c
	}
	if cur := c.cred.Load(); cur == nil || !maps.Equal(*cur, cr.headers) {
		h := maps.Clone(cr.headers)
		c.cred.Store(&h)
	}
	return c, nil
}

// sweepCredentials closes server's per-credential clients idle longer than
// CredentialIdleTTL.
func (p *Pool) sweepCredentials(server string) {
	cutoff := time.Now().Add(-p.credTTL).UnixNano()
	var idle []*conn
	p.mu.Lock()
	if e := p.servers[server]; e != nil {
		for id, c := range e.creds {
			if c.lastUsed.Load() < cutoff {
				c.mu.Lock()
				busy := len(c.calls) > 0
				c.mu.Unlock()
				if !busy {
					idle = append(idle, c)
					delete(e.creds, id)
				}
			}
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// do runs fn on server's client under timeout and names the server and op
// in any error.
func (p *Pool) do(ctx context.Context, server, op string, timeout time.Duration, cl *call, idempotent bool, fn func(context.Context, *client.Client) error) error {
	c, err := p.conn(ctx, server)
	if err != nil {
		return fmt.Errorf("upstream %q: %s: %w", server, op, err)
	}
	return p.doConn(ctx, c, op, timeout, cl, idempotent, fn)
}

func (p *Pool) doConn(ctx context.Context, c *conn, op string, timeout time.Duration, cl *call, idempotent bool, fn func(context.Context, *client.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.do(ctx, cl, idempotent, fn)
	if err == nil {
		return nil
	}
	if cerr := ctxErr(ctx); cerr != nil {
		// mcp-go wraps the context's error in transport prose; say it plainly.
		return fmt.Errorf("upstream %q: %s: %w", c.key.server, op, cerr)
	}
	return fmt.Errorf("upstream %q: %s: %w", c.key.server, op, err)
}

func (p *Pool) timeoutFor(server string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.servers[server]; e != nil && e.spec.CallTimeout > 0 {
		return e.spec.CallTimeout
	}
	return p.callTimeout
}

// ListTools lists every tool of server (all pages). Its outcome sets the
// server's health (for the server's own credentials).
func (p *Pool) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	c, err := p.conn(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: list tools: %w", server, err)
	}
	return p.listTools(ctx, c)
}

func (p *Pool) listTools(ctx context.Context, c *conn) ([]mcp.Tool, error) {
	var tools []mcp.Tool
	err := p.doConn(ctx, c, "list tools", p.listTimeout, nil, true, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.ListTools(ctx, mcp.ListToolsRequest{})
		if err != nil {
			return err
		}
		tools = res.Tools
		return nil
	})
	// A caller that gave up (or whose own deadline passed), or a closing
	// conn, says nothing about the upstream; the list timeout does.
	if c.shared && (err == nil || ctx.Err() == nil && !errors.Is(err, errClosed)) && c.ctx.Err() == nil {
		c.setHealth(err == nil, len(tools), err)
	}
	if err != nil {
		return nil, err
	}
	if tools == nil {
		tools = []mcp.Tool{}
	}
	return tools, nil
}

// CallTool calls a tool on server. obs may be nil. The request is rebuilt
// (name, arguments, task and _meta only, never the inbound HTTP headers);
// a caller's progress token is replaced by one the gateway generates, and
// notifications/progress carrying it reach obs.OnNotification with the
// caller's token restored.
func (p *Pool) CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *Observer) (*mcp.CallToolResult, error) {
	up := mcp.CallToolRequest{}
	up.Params.Name = req.Params.Name
	up.Params.Arguments = req.Params.Arguments
	up.Params.RawArguments = req.Params.RawArguments
	up.Params.Task = req.Params.Task
	cl := &call{obs: obs}
	up.Params.Meta = p.upstreamMeta(req.Params.Meta, cl)
	var res *mcp.CallToolResult
	err := p.do(ctx, server, fmt.Sprintf("call tool %q", req.Params.Name), p.timeoutFor(server), cl, false,
		func(ctx context.Context, c *client.Client) error {
			r, err := c.CallTool(ctx, up)
			res = r
			return err
		})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// upstreamMeta copies a caller's _meta for the upstream request, swapping
// the progress token for a gateway-generated one recorded in cl.
func (p *Pool) upstreamMeta(m *mcp.Meta, cl *call) *mcp.Meta {
	if m == nil {
		return nil
	}
	out := &mcp.Meta{}
	if len(m.AdditionalFields) > 0 {
		out.AdditionalFields = maps.Clone(m.AdditionalFields)
		// Keys that describe the downstream hop (its protocol version,
		// identity, capabilities) are not the gateway's to repeat; the
		// upstream client states its own. A requested log level is kept.
		for _, k := range []string{"progressToken", mcp.MetaKeyProtocolVersion, mcp.MetaKeyClientInfo,
			mcp.MetaKeyClientCapabilities, mcp.MetaKeyServerInfo, mcp.MetaKeySubscriptionID} {
			delete(out.AdditionalFields, k)
		}
	}
	// Nobody to tell: no token, so the upstream sends no progress.
	if m.ProgressToken != nil && cl.obs != nil && cl.obs.OnNotification != nil {
		cl.token = m.ProgressToken
		cl.upTok = "toolgate-" + strconv.FormatUint(p.seq.Add(1), 10)
		out.ProgressToken = cl.upTok
	}
	return out
}

// ListResources lists every resource of server (all pages).
func (p *Pool) ListResources(ctx context.Context, server string) ([]mcp.Resource, error) {
	var out []mcp.Resource
	err := p.do(ctx, server, "list resources", p.listTimeout, nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
		if err == nil {
			out = res.Resources
		}
		return err
	})
	return out, err
}

// ListResourceTemplates lists every resource template of server.
func (p *Pool) ListResourceTemplates(ctx context.Context, server string) ([]mcp.ResourceTemplate, error) {
	var out []mcp.ResourceTemplate
	err := p.do(ctx, server, "list resource templates", p.listTimeout, nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
		if err == nil {
			out = res.ResourceTemplates
		}
		return err
	})
	return out, err
}

// ReadResource reads a resource from server. Only the URI and arguments of
// req are sent.
func (p *Pool) ReadResource(ctx context.Context, server string, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	up := mcp.ReadResourceRequest{}
	up.Params.URI = req.Params.URI
	up.Params.Arguments = req.Params.Arguments
	var out *mcp.ReadResourceResult
	err := p.do(ctx, server, fmt.Sprintf("read resource %q", req.Params.URI), p.timeoutFor(server), nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.ReadResource(ctx, up)
		out = res
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListPrompts lists every prompt of server.
func (p *Pool) ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error) {
	var out []mcp.Prompt
	err := p.do(ctx, server, "list prompts", p.listTimeout, nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
		if err == nil {
			out = res.Prompts
		}
		return err
	})
	return out, err
}

// GetPrompt gets a prompt from server. Only the name and arguments of req
// are sent.
func (p *Pool) GetPrompt(ctx context.Context, server string, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	up := mcp.GetPromptRequest{}
	up.Params.Name = req.Params.Name
	up.Params.Arguments = req.Params.Arguments
	var out *mcp.GetPromptResult
	err := p.do(ctx, server, fmt.Sprintf("get prompt %q", req.Params.Name), p.timeoutFor(server), nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.GetPrompt(ctx, up)
		out = res
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Complete asks server for argument completions. Only the ref, argument
// and context of req are sent.
func (p *Pool) Complete(ctx context.Context, server string, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	up := mcp.CompleteRequest{}
	up.Params.Ref = req.Params.Ref
	up.Params.Argument = req.Params.Argument
	up.Params.Context = req.Params.Context
	var out *mcp.CompleteResult
	err := p.do(ctx, server, "complete", p.timeoutFor(server), nil, true, func(ctx context.Context, c *client.Client) error {
		res, err := c.Complete(ctx, up)
		out = res
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Health reports every configured server's state, keyed by name. A server
// is healthy only when its last tools/list succeeded.
func (p *Pool) Health() map[string]Health {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.servers))
	for _, e := range p.servers {
		conns = append(conns, e.def)
	}
	p.mu.Unlock()
	out := make(map[string]Health, len(conns))
	for _, c := range conns {
		c.mu.Lock()
		out[c.key.server] = c.health
		c.mu.Unlock()
	}
	return out
}

// Close closes every client, stops background work and waits for it. Calls
// in flight fail. It is idempotent and always returns nil.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var conns []*conn
	for _, e := range p.servers {
		conns = append(conns, e.conns()...)
	}
	p.servers = map[string]*entry{}
	p.mu.Unlock()
	p.cancel()
	closeAll(conns)
	p.wgMu.Lock()
	p.stopping = true
	p.wgMu.Unlock()
	p.wg.Wait()
	if p.ownHC {
		p.hc.CloseIdleConnections()
	}
	return nil
}

type ctxKey int

const (
	callerHeadersKey ctxKey = iota
	credentialKey
)

// WithCallerHeaders returns ctx carrying the downstream request's headers,
// from which Spec.ForwardHeaders and X-Request-Id are forwarded.
func WithCallerHeaders(ctx context.Context, h http.Header) context.Context {
	return context.WithValue(ctx, callerHeadersKey, h)
}

type credential struct {
	id      string
	headers map[string]string
}

// WithCredential returns ctx asking the pool to call upstreams with a
// client of their own for credential id (for example a user's OAuth token),
// sending headers on every request of that client; they beat
// Spec.AuthHeaders. Clients are created on first use, keyed by (server, id),
// updated when headers change (a refreshed token) and closed after
// Config.CredentialIdleTTL without use. They do not affect Health.
func WithCredential(ctx context.Context, id string, headers map[string]string) context.Context {
	return context.WithValue(ctx, credentialKey, credential{id: id, headers: headers})
}
