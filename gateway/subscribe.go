package gateway

import (
	"context"

	"github.com/toolgate/toolgate/gateway/federation"
)

// Resource subscriptions go to the upstream with the caller's upstream
// credentials, like every other MCP method (see oauthUpstreams).

var _ federation.Subscriber = oauthUpstreams{}

func (u oauthUpstreams) Subscribe(ctx context.Context, server, uri string) error {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return err
	}
	return u.p.Subscribe(ctx, server, uri)
}

func (u oauthUpstreams) Unsubscribe(ctx context.Context, server, uri string) error {
	ctx, err := u.ctx(ctx, server)
	if err != nil {
		return err
	}
	return u.p.Unsubscribe(ctx, server, uri)
}

func (u oauthUpstreams) OnResourceUpdated(fn func(server, uri string)) { u.p.OnResourceUpdated(fn) }
