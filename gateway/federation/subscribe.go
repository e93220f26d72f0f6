package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Resource subscriptions (2025-era resources/subscribe and unsubscribe).
//
// A downstream session subscribes to a URI as it sees it (federated on
// aggregate routes, original on single-server routes). The gateway resolves
// it like a read, subscribes upstream once per (server, upstream URI) however
// many sessions asked, and relays the upstream's
// notifications/resources/updated to every subscribed session with the URI
// that session used. The upstream subscription ends when the last session
// unsubscribes or ends (DELETE or idle expiry on streamable HTTP, the stream
// closing on SSE).

// Subscriber is the optional part of Upstreams that forwards resource
// subscriptions (*upstream.Pool implements it). Without it the gateway does
// not advertise resources.subscribe.
type Subscriber interface {
	// Subscribe sends resources/subscribe for uri (the upstream's URI).
	Subscribe(ctx context.Context, server, uri string) error
	// Unsubscribe sends resources/unsubscribe for uri.
	Unsubscribe(ctx context.Context, server, uri string) error
	// OnResourceUpdated sets the function called when a subscribed URI
	// changes upstream.
	OnResourceUpdated(fn func(server, uri string))
}

// subKey is one upstream subscription: a principal's (callers may reach an
// upstream with credentials of their own, so their subscriptions are their
// own too) to a server's URI.
type subKey struct{ principal, server, uri string }

// subscriptions maps upstream subscriptions to the downstream sessions that
// asked for them. Its lock is never held across an upstream call.
type subscriptions struct {
	mu        sync.Mutex
	bySub     map[subKey]map[string]string          // -> session id -> URI as the session knows it
	bySession map[string]map[subKey]context.Context // session id -> its subscriptions, with the subscribing request's context (its principal and credentials, to unsubscribe with)
	sse       map[string]bool                       // sessions on the legacy SSE transport
	pending   map[subKey]*sync.Mutex                // serializes upstream (un)subscribe per key
}

func newSubscriptions() *subscriptions {
	return &subscriptions{
		bySub:     map[subKey]map[string]string{},
		bySession: map[string]map[subKey]context.Context{},
		sse:       map[string]bool{},
		pending:   map[subKey]*sync.Mutex{},
	}
}

// keyLock returns the lock serializing upstream work on k.
func (s *subscriptions) keyLock(k subKey) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.pending[k]
	if m == nil {
		m = &sync.Mutex{}
		s.pending[k] = m
	}
	return m
}

// errSubscribeNoSession: resources/subscribe outside a session has nobody to
// notify.
var errSubscribeNoSession = errors.New("resources/subscribe needs a session: initialize first (or, on 2026-07-28, use subscriptions/listen)")

// subscribeHook runs before mcp-go handles a request (OnRequestInitialization):
// for a 2025-era resources/subscribe or unsubscribe it does the upstream
// work, and an error it returns is the request's answer. mcp-go then
// acknowledges a successful request with {}.
func (f *Federation) subscribeHook(ctx context.Context, _ any, message any) error {
	raw, ok := message.(json.RawMessage)
	if !ok {
		return nil
	}
	var m struct {
		Method string `json:"method"`
		Params struct {
			URI  string         `json:"uri"`
			Meta map[string]any `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	if m.Method != string(mcp.MethodResourcesSubscribe) && m.Method != string(mcp.MethodResourcesUnsubscribe) {
		return nil
	}
	if v, _ := m.Params.Meta[mcp.MetaKeyProtocolVersion].(string); v != "" {
		return nil // 2026-07-28: mcp-go answers that the method was removed
	}
	if m.Params.URI == "" || f.subscriber == nil {
		return nil // mcp-go answers: uri is required / not supported
	}
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil || sess.SessionID() == "" {
		if m.Method == string(mcp.MethodResourcesUnsubscribe) {
			return nil
		}
		return errSubscribeNoSession
	}
	st := stateFrom(ctx)
	if m.Method == string(mcp.MethodResourcesUnsubscribe) {
		f.unsubscribe(ctx, sess.SessionID(), m.Params.URI)
		return nil
	}
	ref, ok := f.resolveURI(ctx, st.scope, m.Params.URI)
	if !ok {
		return fmt.Errorf("resource %q not found", m.Params.URI)
	}
	return f.subscribe(ctx, sess.SessionID(), st.scope.key == "sse", m.Params.URI, subKey{f.principal(ctx), ref.st.cfg.Name, ref.original})
}

// subscribe records that session wants updates of k (shown to it as
// downURI), subscribing upstream if it is the first.
func (f *Federation) subscribe(ctx context.Context, session string, sse bool, downURI string, k subKey) error {
	s := f.subs
	kl := s.keyLock(k)
	kl.Lock()
	defer kl.Unlock()
	s.mu.Lock()
	first := len(s.bySub[k]) == 0
	s.mu.Unlock()
	if first {
		if err := f.subscriber.Subscribe(ctx, k.server, k.uri); err != nil {
			s.mu.Lock()
			if len(s.bySub[k]) == 0 {
				delete(s.pending, k)
			}
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySub[k] == nil {
		s.bySub[k] = map[string]string{}
	}
	s.bySub[k][session] = downURI
	if s.bySession[session] == nil {
		s.bySession[session] = map[subKey]context.Context{}
	}
	s.bySession[session][k] = context.WithoutCancel(ctx)
	if sse {
		s.sse[session] = true
	}
	return nil
}

// unsubscribe removes session's subscription to downURI (as it spelled it).
// Unsubscribing what was never subscribed is a no-op.
func (f *Federation) unsubscribe(ctx context.Context, session, downURI string) {
	s := f.subs
	s.mu.Lock()
	var keys []subKey
	for k := range s.bySession[session] {
		if s.bySub[k][session] == downURI && k.principal == f.principal(ctx) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		f.dropSub(ctx, session, k)
	}
}

// dropSub removes session from k and unsubscribes upstream when it was the
// last one.
func (f *Federation) dropSub(ctx context.Context, session string, k subKey) {
	s := f.subs
	kl := s.keyLock(k)
	kl.Lock()
	defer kl.Unlock()
	s.mu.Lock()
	subs := s.bySub[k]
	delete(subs, session)
	if ks := s.bySession[session]; ks != nil {
		delete(ks, k)
		if len(ks) == 0 {
			delete(s.bySession, session)
			delete(s.sse, session)
		}
	}
	last := subs != nil && len(subs) == 0
	if last {
		delete(s.bySub, k)
		delete(s.pending, k)
	}
	s.mu.Unlock()
	if last {
		if err := f.subscriber.Unsubscribe(ctx, k.server, k.uri); err != nil {
			f.log.Debug("upstream unsubscribe failed", "server", k.server, "uri", k.uri, "err", err)
		}
	}
}

// sessionEnded drops every subscription of session (in the background: it
// may call upstreams).
func (f *Federation) sessionEnded(session string, onlySSE bool) {
	s := f.subs
	if s == nil || f.subscriber == nil || f.base.Err() != nil {
		return
	}
	s.mu.Lock()
	if onlySSE && !s.sse[session] {
		s.mu.Unlock()
		return
	}
	subs := make(map[subKey]context.Context, len(s.bySession[session]))
	for k, ctx := range s.bySession[session] {
		subs[k] = ctx
	}
	s.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for k, sctx := range subs {
			ctx, cancel := context.WithTimeout(sctx, f.listTimeout)
			f.dropSub(ctx, session, k)
			cancel()
		}
	}()
}

// resourceUpdated relays an upstream's notifications/resources/updated to
// the sessions subscribed to it.
func (f *Federation) resourceUpdated(serverName, uri string) {
	s := f.subs
	s.mu.Lock()
	targets := map[string]string{}
	for k, sessions := range s.bySub {
		if k.server != serverName || k.uri != uri {
			continue
		}
		for session, down := range sessions {
			targets[session] = down
		}
	}
	s.mu.Unlock()
	for session, down := range targets {
		err := f.mcp.SendNotificationToSpecificClient(session, string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": down})
		if err != nil {
			// A streamable HTTP session without its GET stream open has
			// nowhere to receive it; it keeps the subscription.
			f.log.Debug("resource update not delivered", "server", serverName, "uri", uri, "err", err)
		}
	}
}
