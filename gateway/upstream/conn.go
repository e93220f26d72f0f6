package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// errClosed is returned by calls on a connection the pool has closed (the
// server was removed or changed by Update, or the pool was closed).
var errClosed = errors.New("upstream connection closed")

// errConnLost is returned when every connection made for a request was dropped before the
// request could use it.
var errConnLost = errors.New("upstream connection lost right after it was made")

// key identifies one upstream client: a server, and the credential the
// client authenticates with ("" for the server's configured credentials).
type key struct {
	server, credential string
}

// conn owns the mcp-go client for one key. The client is created on first
// use (or by the health loop), replaced when its connection is lost or its
// session is gone, and shared by every caller.
type conn struct {
	p      *Pool
	key    key
	spec   Spec
	shared bool // the server's own client (not a WithCredential one): it sets Health

	// ctx lives as long as the conn: it is the client's Start context
	// (streamable GET stream, SSE stream) and bounds background work.
	ctx    context.Context
	cancel context.CancelFunc

	cred     atomic.Pointer[map[string]string] // WithCredential headers
	lastUsed atomic.Int64                      // unix nanos

	kick chan struct{} // wakes the health loop

	mu      sync.Mutex
	cur     *live         // the connected client, nil if none
	dialing chan struct{} // closed when the running dial ends
	dialErr error         // result of the last dial
	closed  bool
	calls   map[*call]struct{}
	tokens  map[string]*call // gateway progress token -> call
	subs    map[string]int   // resource URI -> Subscribe count (resent after a reconnect)
	health  Health
	checked bool // health has been set at least once
}

// live is one connected client. A client found broken is replaced at once,
// but closed only when the requests using it are done (unless its
// connection is gone anyway): closing it would abort them, and they are
// better off getting their own answer (often "session gone", which they
// retry on the new client).
type live struct {
	cl   *client.Client
	stop context.CancelFunc // ends the client's context: streams, subscriptions

	// Guarded by conn.mu.
	users int
	dead  bool

	closeOnce sync.Once
}

func (l *live) close() {
	l.closeOnce.Do(func() {
		l.cl.Close() //nolint:errcheck // best effort
		l.stop()
	})
}

// call is one in-flight request that may receive side traffic.
type call struct {
	seq   uint64
	obs   *Observer
	token mcp.ProgressToken // the caller's progress token, nil if none
	upTok string            // the token sent upstream
}

type callKeyT struct{}

func newConn(p *Pool, k key, spec Spec) *conn {
	ctx, cancel := context.WithCancel(p.ctx)
	c := &conn{
		p: p, key: k, spec: spec, ctx: ctx, cancel: cancel,
		kick:   make(chan struct{}, 1),
		calls:  make(map[*call]struct{}),
		tokens: make(map[string]*call),
		subs:   make(map[string]int),
		health: Health{Err: "not checked yet"},
	}
	c.lastUsed.Store(time.Now().UnixNano())
	return c
}

// get returns the connected client, dialing if there is none. Concurrent
// callers share one dial; a caller whose ctx ends stops waiting, the dial
// goes on (bounded by ListTimeout) for the others. A dial already running
// when the caller arrived may predate the upstream coming back, so a caller
// whose first awaited dial fails waits for one more.
//
// The caller must release the live it gets.
func (c *conn) acquire(ctx context.Context) (*live, error) {
	waited, redialed := 0, false
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errClosed
		}
		if l := c.cur; l != nil {
			l.users++
			c.mu.Unlock()
			return l, nil
		}
		if waited >= 2 && c.dialing == nil {
			if err := c.dialErr; err != nil {
				c.mu.Unlock()
				return nil, err
			}
			// The last dial worked but its connection was dropped (invalidated) before
			// we got to use it: dial once more rather than report no error and no client.
			if redialed {
				c.mu.Unlock()
				return nil, errConnLost
			}
			redialed, waited = true, 0
		}
		ch := c.dialing
		if ch == nil {
			if !c.p.goTracked() {
				c.mu.Unlock()
				return nil, errClosed
			}
			ch = make(chan struct{})
			c.dialing = ch
			go c.dialAsync(ch)
			waited = max(waited, 1) // our own dial is fresh: one is enough
		}
		c.mu.Unlock()
		select {
		case <-ch:
			waited++
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// release ends a use of l that acquire started.
func (c *conn) release(l *live) {
	c.mu.Lock()
	l.users--
	closeNow := l.dead && l.users == 0
	c.mu.Unlock()
	if closeNow {
		c.closeLater(l)
	}
}

// get returns the current client (for tests: it is not held).
func (c *conn) get(ctx context.Context) (*client.Client, error) {
	l, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	c.release(l)
	return l.cl, nil
}

// closeLater closes l off the caller's path (closing a streamable HTTP
// client sends DELETE).
func (c *conn) closeLater(l *live) {
	if c.p.goTracked() {
		go func() {
			defer c.p.wg.Done()
			l.close()
		}()
		return
	}
	l.close()
}

func (c *conn) dialAsync(ch chan struct{}) {
	defer c.p.wg.Done()
	l, cctx, err := c.dial()
	c.mu.Lock()
	var discard *live
	if err == nil && c.closed {
		err = errClosed
		discard = l
	}
	if err == nil {
		c.cur = l
		c.listen(cctx, l.cl)
		c.resubscribe(cctx, l.cl)
	}
	c.dialErr = err
	c.dialing = nil
	close(ch)
	c.mu.Unlock()
	if discard != nil {
		discard.close()
	}
	if err != nil && !errors.Is(err, errClosed) {
		c.p.log.Debug("upstream connect failed", "server", c.key.server, "err", err)
	}
}

// dial builds, starts and initializes a new client. The client lives in
// cctx (its streams use it); stop ends cctx.
func (c *conn) dial() (l *live, cctx context.Context, err error) {
	p := c.p
	cctx, cstop := context.WithCancel(c.ctx)
	defer func() {
		if err != nil {
			cstop()
		}
	}()
	ctx, cancel := context.WithTimeout(cctx, p.listTimeout)
	defer cancel()
	// Start's context must outlive it (it carries the SSE and GET streams),
	// so it is bounded separately: if Start is not done within the connect
	// timeout, cctx ends and takes the attempt with it.
	var startState atomic.Int32 // 0 starting, 1 started, 2 timed out
	startTimer := time.AfterFunc(p.listTimeout, func() {
		if startState.CompareAndSwap(0, 2) {
			cstop()
		}
	})
	defer startTimer.Stop()

	headerFunc := func(ctx context.Context) map[string]string {
		var cred map[string]string
		if m := c.cred.Load(); m != nil {
			cred = *m
		}
		return buildHeaders(&c.spec, cred, callerHeaders(ctx))
	}
	var inner transport.Interface
	switch strings.ToLower(c.spec.Transport) {
	case "", "http", "streamable", "streamable-http", "streamable_http":
		opts := []transport.StreamableHTTPCOption{
			transport.WithHTTPBasicClient(p.hc),
			transport.WithHTTPHeaderFunc(headerFunc),
			transport.WithHTTPLogger(p.log),
		}
		if c.spec.Protocol != ProtocolAuto {
			//lint:ignore SA1019 2025-era upstreams send sampling/elicitation on the GET stream
			opts = append(opts, transport.WithContinuousListening())
		}
		t, err := transport.NewStreamableHTTP(c.spec.URL, opts...)
		if err != nil {
			return nil, nil, err
		}
		inner = t
	case "sse":
		t, err := transport.NewSSE(c.spec.URL,
			transport.WithHTTPClient(p.hc),
			transport.WithHeaderFunc(headerFunc),
			transport.WithEndpointTimeout(p.listTimeout),
			// Every request carries its own deadline; this only bounds
			// requests without one.
			transport.WithResponseTimeout(24*time.Hour),
			transport.WithSSELogger(p.log),
		)
		if err != nil {
			return nil, nil, err
		}
		inner = t
	default:
		return nil, nil, fmt.Errorf("unsupported transport %q (want http or sse)", c.spec.Transport)
	}

	t := &tap{Interface: inner, c: c}
	h := handlers{c}
	opts := []client.ClientOption{client.WithSamplingHandler(h), client.WithElicitationHandler(h)}
	if c.spec.Protocol != ProtocolAuto {
		opts = append(opts, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	}
	cl := client.NewClient(t, opts...)
	l = &live{cl: cl, stop: cstop}
	cl.OnNotification(c.onNotification)
	cl.OnConnectionLost(func(err error) { c.lost(l, err) })
	err = cl.Start(cctx)
	if !startState.CompareAndSwap(0, 1) && err == nil {
		err = fmt.Errorf("%w (connect timeout %s)", context.DeadlineExceeded, p.listTimeout)
	}
	if err != nil {
		cl.Close() //nolint:errcheck
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "toolgate", Version: "1"}
	if c.spec.Protocol != ProtocolAuto {
		init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	}
	if _, err := cl.Initialize(ctx, init); err != nil {
		cl.Close() //nolint:errcheck
		if ctx.Err() != nil && c.ctx.Err() == nil {
			err = fmt.Errorf("%w (connect timeout %s)", context.DeadlineExceeded, p.listTimeout)
		}
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	if lvl := p.cfg.UpstreamLogLevel; lvl != "" && cl.GetServerCapabilities().Logging != nil {
		//lint:ignore SA1019 logging is how 2025-era upstreams report progress in words
		if err := cl.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevel(lvl)}}); err != nil {
			p.log.Debug("upstream logging/setLevel", "server", c.key.server, "err", err)
		}
	}
	return l, cctx, nil
}

// listen keeps a subscriptions/listen stream open on a 2026-07-28
// connection, the way list_changed arrives there (legacy connections get it
// on the GET or SSE stream without asking), until ctx (the client's) ends.
func (c *conn) listen(ctx context.Context, cl *client.Client) {
	if c.p.cfg.OnListChanged == nil || !mcp.IsModernProtocol(cl.ProtocolVersion()) {
		return
	}
	caps := cl.GetServerCapabilities()
	filter := mcp.SubscriptionFilter{
		ToolsListChanged:     caps.Tools != nil && caps.Tools.ListChanged,
		PromptsListChanged:   caps.Prompts != nil && caps.Prompts.ListChanged,
		ResourcesListChanged: caps.Resources != nil && caps.Resources.ListChanged,
	}
	if filter.IsEmpty() || !c.p.goTracked() {
		return
	}
	go func() {
		defer c.p.wg.Done()
		backoff := c.p.retryMin
		for {
			start := time.Now()
			err := cl.Listen(ctx, filter)
			if ctx.Err() != nil {
				return
			}
			if time.Since(start) > c.p.retryMax {
				backoff = c.p.retryMin
			}
			c.p.log.Debug("upstream subscriptions/listen ended", "server", c.key.server, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, c.p.retryMax)
		}
	}()
}

// invalidate drops l if it is still the current client and wakes the
// health loop; the next caller dials a new one. l is closed once its last
// user releases it, or now if force (its connection is gone: requests
// waiting on it would only wait for their deadline).
func (c *conn) invalidate(l *live, why error, force bool) {
	c.mu.Lock()
	current := c.cur == l
	if current {
		c.cur = nil
	}
	l.dead = true
	closeNow := force || l.users == 0
	c.mu.Unlock()
	if current {
		c.p.log.Info("upstream connection reset", "server", c.key.server, "reason", why)
		c.wake()
	}
	if closeNow {
		c.closeLater(l)
	}
}

// lost is the SSE transport's connection-lost handler: mcp-go does not
// reconnect SSE, so the client is rebuilt.
func (c *conn) lost(l *live, err error) {
	if c.ctx.Err() != nil {
		return
	}
	c.invalidate(l, fmt.Errorf("connection lost: %w", err), true)
	if c.shared {
		c.setHealth(false, 0, fmt.Errorf("connection lost: %w", err))
	}
}

func (c *conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// close stops the conn and closes its client. It is idempotent.
func (c *conn) close() {
	c.cancel()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	l := c.cur
	c.cur = nil
	c.mu.Unlock()
	if l != nil {
		l.close()
	}
}

// do runs fn with the current client. If the upstream says the session is
// gone (it restarted, or expired the session), the client is rebuilt and fn
// retried once: the request was refused before the upstream ran it.
//
// Requests without side effects (idempotent: lists, reads, prompts,
// completions) are also retried once after a connection error, as when a
// keep-alive connection to a restarted upstream turns out dead; tools/call
// is not, since the upstream may have run it.
func (c *conn) do(ctx context.Context, cl *call, idempotent bool, fn func(context.Context, *client.Client) error) error {
	c.lastUsed.Store(time.Now().UnixNano())
	if cl != nil {
		c.register(cl)
		defer c.unregister(cl)
		ctx = context.WithValue(ctx, callKeyT{}, cl)
	}
	for attempt := 0; ; attempt++ {
		l, err := c.acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(ctx, l.cl)
		c.release(l)
		if err == nil {
			return nil
		}
		if attempt == 0 && ctxErr(ctx) == nil && c.sessionGone(err) {
			c.invalidate(l, err, false)
			continue
		}
		if ctxErr(ctx) == nil && isTransportError(err) {
			c.wake()
			if attempt == 0 && idempotent {
				continue
			}
		}
		return err
	}
}

// deadlineSlack is how close to its deadline a request counts as timed out:
// mcp-go's SSE transport reports its own timeout a hair before the context
// expires.
const deadlineSlack = 20 * time.Millisecond

// ctxErr is ctx.Err(), except that a context within deadlineSlack of its
// deadline counts as expired already.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
		return context.DeadlineExceeded
	}
	return nil
}

// sessionGone reports whether err says the upstream no longer knows the
// client's session. Streamable HTTP surfaces 404 as ErrSessionTerminated;
// mcp-go's SSE transport only gives the status and body as text, so for it
// the body is matched.
func (c *conn) sessionGone(err error) bool {
	if errors.Is(err, transport.ErrSessionTerminated) || errors.Is(err, transport.ErrTransportClosed) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "Invalid session ID") || strings.Contains(s, "session not found") ||
		strings.Contains(s, "transport has been closed") || strings.Contains(s, "transport not started")
}

// isTransportError reports whether err came from the connection rather than
// from the upstream's JSON-RPC answer.
func isTransportError(err error) bool {
	var te *transport.Error
	return errors.As(err, &te)
}

func (c *conn) register(cl *call) {
	c.mu.Lock()
	cl.seq = c.p.seq.Add(1)
	c.calls[cl] = struct{}{}
	if cl.upTok != "" {
		c.tokens[cl.upTok] = cl
	}
	c.mu.Unlock()
}

func (c *conn) unregister(cl *call) {
	c.mu.Lock()
	delete(c.calls, cl)
	if cl.upTok != "" {
		delete(c.tokens, cl.upTok)
	}
	c.mu.Unlock()
}

// onNotification runs on the upstream reader goroutine: it only routes.
func (c *conn) onNotification(n mcp.JSONRPCNotification) {
	switch n.Method {
	case string(mcp.MethodNotificationProgress):
		tok := n.Params.AdditionalFields["progressToken"]
		s, ok := tok.(string)
		if !ok {
			return
		}
		c.mu.Lock()
		cl := c.tokens[s]
		c.mu.Unlock()
		if cl == nil || cl.obs == nil || cl.obs.OnNotification == nil {
			return
		}
		out := n
		out.Params.AdditionalFields = make(map[string]any, len(n.Params.AdditionalFields))
		for k, v := range n.Params.AdditionalFields {
			out.Params.AdditionalFields[k] = v
		}
		out.Params.AdditionalFields["progressToken"] = cl.token
		cl.obs.OnNotification(out)
	case "notifications/message":
		// Log messages carry no request id: every in-flight call on this
		// client whose caller listens gets them.
		c.mu.Lock()
		var obs []*Observer
		for cl := range c.calls {
			if cl.obs != nil && cl.obs.OnNotification != nil {
				obs = append(obs, cl.obs)
			}
		}
		c.mu.Unlock()
		for _, o := range obs {
			o.OnNotification(n)
		}
	case string(mcp.MethodNotificationResourceUpdated):
		uri, _ := n.Params.AdditionalFields["uri"].(string)
		if uri == "" {
			return
		}
		c.mu.Lock()
		_, subscribed := c.subs[uri]
		c.mu.Unlock()
		if f := c.p.onUpdated.Load(); f != nil && subscribed {
			server := c.key.server
			c.p.notes.post(func() { (*f)(server, uri) })
		}
	case string(mcp.MethodNotificationToolsListChanged),
		string(mcp.MethodNotificationResourcesListChanged),
		string(mcp.MethodNotificationPromptsListChanged):
		if f := c.p.cfg.OnListChanged; f != nil {
			server, method := c.key.server, n.Method
			c.p.notes.post(func() { f(server, method) })
		}
	}
}

// observer picks the Observer that answers a request the upstream sent:
// the call whose context the request arrived on (its own response stream,
// or a multi round-trip), else the most recent in-flight call on this
// client that can answer.
func (c *conn) observer(ctx context.Context, can func(*Observer) bool) *Observer {
	if cl, ok := ctx.Value(callKeyT{}).(*call); ok && cl.obs != nil && can(cl.obs) {
		c.mu.Lock()
		_, mine := c.calls[cl]
		c.mu.Unlock()
		if mine {
			return cl.obs
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *call
	for cl := range c.calls {
		if cl.obs != nil && can(cl.obs) && (best == nil || cl.seq > best.seq) {
			best = cl
		}
	}
	if best == nil {
		return nil
	}
	return best.obs
}

// handlers answers the upstream's sampling and elicitation requests by
// routing them to an in-flight call's Observer.
type handlers struct{ c *conn }

var (
	_ client.SamplingHandler    = handlers{}
	_ client.ElicitationHandler = handlers{}
)

func (h handlers) CreateMessage(ctx context.Context, r mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	o := h.c.observer(ctx, func(o *Observer) bool { return o.Sampling != nil })
	if o == nil {
		return nil, fmt.Errorf("upstream %q: sampling: no in-flight call can answer", h.c.key.server)
	}
	// mcp-go parses message content on server-initiated requests but leaves
	// it as decoded JSON on multi round-trip ones: give observers one shape.
	msgs := make([]mcp.SamplingMessage, len(r.Messages))
	for i, m := range r.Messages {
		if _, ok := m.Content.(mcp.Content); !ok {
			content, err := mcp.ParseSamplingContent(m.Content)
			if err != nil {
				return nil, fmt.Errorf("upstream %q: sampling: message %d: %w", h.c.key.server, i, err)
			}
			m.Content = content
		}
		msgs[i] = m
	}
	r.Messages = msgs
	return o.Sampling(ctx, r)
}

func (h handlers) Elicit(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	o := h.c.observer(ctx, func(o *Observer) bool { return o.Elicitation != nil })
	if o == nil {
		return nil, fmt.Errorf("upstream %q: elicitation: no in-flight call can answer", h.c.key.server)
	}
	return o.Elicitation(ctx, r)
}

// setHealth records the result of a list (or a lost connection) and reports
// changes through Config.OnHealth.
func (c *conn) setHealth(ok bool, tools int, err error) {
	now := time.Now()
	c.mu.Lock()
	changed := !c.checked || c.health.Healthy != ok
	c.checked = true
	c.health = Health{Healthy: ok, CheckedAt: now, Tools: tools}
	if !ok {
		c.health.Tools = 0
		if err != nil {
			c.health.Err = err.Error()
		}
	}
	closed := c.closed
	c.mu.Unlock()
	if !changed || closed {
		return
	}
	if ok {
		c.p.log.Info("upstream healthy", "server", c.key.server, "tools", tools)
	} else {
		c.p.log.Warn("upstream unhealthy", "server", c.key.server, "err", err)
	}
	if f := c.p.cfg.OnHealth; f != nil {
		server := c.key.server
		c.p.notes.post(func() { f(server, ok, err) })
	}
}

// check lists the tools (under ListTimeout), which sets the health.
func (c *conn) check() error {
	_, err := c.p.listTools(c.ctx, c)
	return err
}

// loop keeps the health honest: it lists the tools now, then again after
// HealthInterval while healthy, or with exponential backoff (with jitter)
// while failing, until the conn closes.
func (c *conn) loop() {
	defer c.p.wg.Done()
	backoff := c.p.retryMin
	for {
		var err error
		if !c.spec.NoHealthCheck {
			err = c.check()
		}
		if c.ctx.Err() != nil {
			return
		}
		wait := c.p.healthInterval
		if err != nil {
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, c.p.retryMax)
		} else {
			backoff = c.p.retryMin
		}
		t := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
				break waiting
			case <-c.kick:
				// While failing the backoff already paces retries;
				// a kick only speeds up noticing a new failure.
				if err == nil {
					t.Stop()
					break waiting
				}
			}
		}
		c.p.sweepCredentials(c.key.server)
	}
}
