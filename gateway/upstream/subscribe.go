package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// ErrSubscribeUnsupported is returned (wrapped with the server name) by
// Subscribe when the upstream does not offer resource subscriptions on the
// connection the pool holds: it does not declare resources.subscribe, or the
// connection speaks 2026-07-28, where subscriptions ride on
// subscriptions/listen and are not forwarded.
var ErrSubscribeUnsupported = errors.New("resource subscriptions not supported")

// OnResourceUpdated sets the function called with (server, uri) when a
// server sends notifications/resources/updated for a URI subscribed through
// Subscribe. It runs on the pool's callback goroutine (see
// Config.OnListChanged). nil stops the calls.
func (p *Pool) OnResourceUpdated(fn func(server, uri string)) {
	if fn == nil {
		p.onUpdated.Store(nil)
		return
	}
	p.onUpdated.Store(&fn)
}

// Subscribe sends resources/subscribe for uri (the upstream's own URI) to
// server and remembers it: after a reconnect the pool subscribes again, and
// notifications/resources/updated for it reach OnResourceUpdated.
// Subscriptions are counted per (client, URI): each successful Subscribe
// needs one Unsubscribe, and the upstream is told only about the first and
// the last.
func (p *Pool) Subscribe(ctx context.Context, server, uri string) error {
	c, err := p.conn(ctx, server)
	if err != nil {
		return fmt.Errorf("upstream %q: subscribe: %w", server, err)
	}
	c.mu.Lock()
	if c.subs[uri] > 0 {
		c.subs[uri]++
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	err = p.doConn(ctx, c, fmt.Sprintf("subscribe %q", uri), p.timeoutFor(server), nil, true,
		func(ctx context.Context, cl *client.Client) error {
			if err := subscribable(cl); err != nil {
				return err
			}
			req := mcp.SubscribeRequest{}
			req.Params.URI = uri
			//lint:ignore SA1019 2025-era upstreams take resources/subscribe
			return cl.Subscribe(ctx, req)
		})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.subs[uri]++
	c.mu.Unlock()
	return nil
}

// Unsubscribe ends one Subscribe of uri; after the last it sends
// resources/unsubscribe to server. An error means only that the upstream was
// not told; the pool has forgotten the subscription either way.
func (p *Pool) Unsubscribe(ctx context.Context, server, uri string) error {
	c, err := p.conn(ctx, server)
	if err != nil {
		return fmt.Errorf("upstream %q: unsubscribe: %w", server, err)
	}
	c.mu.Lock()
	n := c.subs[uri]
	if n > 1 {
		c.subs[uri] = n - 1
	} else {
		delete(c.subs, uri)
	}
	c.mu.Unlock()
	if n != 1 {
		return nil
	}
	return p.doConn(ctx, c, fmt.Sprintf("unsubscribe %q", uri), p.timeoutFor(server), nil, true,
		func(ctx context.Context, cl *client.Client) error {
			req := mcp.UnsubscribeRequest{}
			req.Params.URI = uri
			//lint:ignore SA1019 2025-era upstreams take resources/unsubscribe
			return cl.Unsubscribe(ctx, req)
		})
}

// subscribable reports whether cl's upstream takes resources/subscribe.
func subscribable(cl *client.Client) error {
	if mcp.IsModernProtocol(cl.ProtocolVersion()) {
		return fmt.Errorf("%w (the upstream speaks %s)", ErrSubscribeUnsupported, cl.ProtocolVersion())
	}
	if caps := cl.GetServerCapabilities(); caps.Resources == nil || !caps.Resources.Subscribe {
		return fmt.Errorf("%w (the upstream does not declare resources.subscribe)", ErrSubscribeUnsupported)
	}
	return nil
}

// resubscribe repeats the conn's subscriptions on a new client cl (the old
// upstream session, and its subscriptions, are gone). It runs in the
// background; c.mu is held by the caller.
func (c *conn) resubscribe(ctx context.Context, cl *client.Client) {
	if len(c.subs) == 0 || subscribable(cl) != nil || !c.p.goTracked() {
		return
	}
	uris := make([]string, 0, len(c.subs))
	for u := range c.subs {
		uris = append(uris, u)
	}
	go func() {
		defer c.p.wg.Done()
		for _, u := range uris {
			rctx, cancel := context.WithTimeout(ctx, c.p.listTimeout)
			req := mcp.SubscribeRequest{}
			req.Params.URI = u
			//lint:ignore SA1019 2025-era upstreams take resources/subscribe
			err := cl.Subscribe(rctx, req)
			cancel()
			if err != nil {
				c.p.log.Debug("upstream resubscribe failed", "server", c.key.server, "uri", u, "err", err)
			}
		}
	}()
}
