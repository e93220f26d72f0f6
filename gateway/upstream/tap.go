package upstream

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// cancelTimeout bounds sending one notifications/cancelled.
const cancelTimeout = 5 * time.Second

// tap wraps an mcp-go transport to see what the client hides: the JSON-RPC
// id of each request. mcp-go's client sends nothing when a request's context
// ends over HTTP (client.cancelRequest), so the tap sends
// notifications/cancelled itself, with the id the upstream knows.
//
// It forwards the optional interfaces the client looks for (bidirectional
// requests, protocol version, connection loss, legacy pinning).
type tap struct {
	transport.Interface
	c       *conn
	version atomic.Value // string: the negotiated protocol version
}

var (
	_ transport.BidirectionalInterface = (*tap)(nil)
	_ transport.HTTPConnection         = (*tap)(nil)
)

func (t *tap) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	resp, err := t.Interface.SendRequest(ctx, req)
	if err != nil && ctxErr(ctx) != nil {
		t.cancelled(ctx, req)
	}
	return resp, err
}

// cancelled tells the upstream that req is abandoned. On 2026-07-28 closing
// the response stream is the cancellation, so nothing is sent there; the
// handshake is never cancelled.
func (t *tap) cancelled(ctx context.Context, req transport.JSONRPCRequest) {
	switch req.Method {
	case string(mcp.MethodInitialize), string(mcp.MethodServerDiscover):
		return
	}
	if v, _ := t.version.Load().(string); mcp.IsModernProtocol(v) {
		return
	}
	n := mcp.JSONRPCNotification{
		JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{
			Method: string(mcp.MethodNotificationCancelled),
			Params: mcp.NotificationParams{AdditionalFields: map[string]any{
				"requestId": req.ID,
				"reason":    ctxErr(ctx).Error(),
			}},
		},
	}
	// The caller already has its error: send off its path, with the
	// caller's values (headers, credential) but not its cancellation, and
	// stop when the connection closes.
	p := t.c.p
	if !p.goTracked() {
		return
	}
	go func() {
		defer p.wg.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		stop := context.AfterFunc(t.c.ctx, cancel)
		defer stop()
		if err := t.Interface.SendNotification(sctx, n); err != nil {
			p.log.Debug("send notifications/cancelled", "server", t.c.key.server, "err", err)
		}
	}()
}

func (t *tap) SetRequestHandler(h transport.RequestHandler) {
	if b, ok := t.Interface.(transport.BidirectionalInterface); ok {
		b.SetRequestHandler(h)
	}
}

func (t *tap) SetProtocolVersion(v string) {
	t.version.Store(v)
	if h, ok := t.Interface.(transport.HTTPConnection); ok {
		h.SetProtocolVersion(v)
	}
}

func (t *tap) SetConnectionLostHandler(h func(error)) {
	type setter interface{ SetConnectionLostHandler(func(error)) }
	if s, ok := t.Interface.(setter); ok {
		s.SetConnectionLostHandler(h)
	}
}

// RequiresLegacyProtocol reports what the wrapped transport does (true for a
// streamable HTTP transport with continuous listening).
func (t *tap) RequiresLegacyProtocol() bool {
	type legacy interface{ RequiresLegacyProtocol() bool }
	l, ok := t.Interface.(legacy)
	return ok && l.RequiresLegacyProtocol()
}
