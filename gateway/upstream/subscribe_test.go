package upstream

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// subUpstream is a streamable HTTP mcp-go server offering resource subscriptions, counting
// resources/subscribe and unsubscribe; restart replaces it (sessions and subscriptions gone)
// on the same address.
type subUpstream struct {
	tb           testing.TB
	addr         string
	subs, unsubs atomic.Int32
	mu           sync.Mutex
	srv          *server.MCPServer
	hs           *httptest.Server
}

func newSubUpstream(tb testing.TB) *subUpstream {
	u := &subUpstream{tb: tb}
	u.start("127.0.0.1:0")
	tb.Cleanup(u.stop)
	return u
}

func (u *subUpstream) start(addr string) {
	h := &server.Hooks{}
	h.AddAfterSubscribe(func(context.Context, any, *mcp.SubscribeRequest, *mcp.EmptyResult) { u.subs.Add(1) })
	h.AddAfterUnsubscribe(func(context.Context, any, *mcp.UnsubscribeRequest, *mcp.EmptyResult) { u.unsubs.Add(1) })
	s := server.NewMCPServer("sub", "1", server.WithToolCapabilities(false), server.WithResourceCapabilities(true, false), server.WithHooks(h))
	s.AddTool(mcp.NewTool("noop"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		u.tb.Fatalf("listen: %v", err)
	}
	hs := httptest.NewUnstartedServer(server.NewStreamableHTTPServer(s, server.WithStateful(true)))
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	u.mu.Lock()
	u.srv, u.hs, u.addr = s, hs, l.Addr().String()
	u.mu.Unlock()
}

func (u *subUpstream) stop() {
	u.mu.Lock()
	hs := u.hs
	u.hs = nil
	u.mu.Unlock()
	if hs != nil {
		hs.Listener.Close()
		hs.CloseClientConnections()
		hs.Close()
	}
}

func (u *subUpstream) updated(uri string) {
	u.mu.Lock()
	s := u.srv
	u.mu.Unlock()
	s.SendNotificationToAllClients(string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": uri})
}

func TestSubscribeCountsAndRelays(t *testing.T) {
	u := newSubUpstream(t)
	p := newPool(t, Config{}, Spec{Name: "up", URL: "http://" + u.addr + "/mcp"})
	var mu sync.Mutex
	var got []string
	p.OnResourceUpdated(func(server, uri string) {
		mu.Lock()
		got = append(got, server+" "+uri)
		mu.Unlock()
	})
	updates := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	ctx := context.Background()
	for range 2 {
		if err := p.Subscribe(ctx, "up", "test://a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := u.subs.Load(); n != 1 {
		t.Errorf("two Subscribes sent %d resources/subscribe, want 1", n)
	}
	u.updated("test://a")
	u.updated("test://not-subscribed")
	eventually(t, 5*time.Second, "the update", func() bool { return len(updates()) >= 1 })
	time.Sleep(50 * time.Millisecond)
	if g := updates(); len(g) != 1 || g[0] != "up test://a" {
		t.Errorf("updates = %q, want only [up test://a]", g)
	}

	// The upstream forgets the session (restart): the pool subscribes again on its new one.
	u.stop()
	time.Sleep(50 * time.Millisecond)
	u.start(u.addr)
	if _, err := p.ListTools(ctx, "up"); err != nil {
		t.Fatalf("list after restart: %v", err)
	}
	eventually(t, 5*time.Second, "the resubscription", func() bool { return u.subs.Load() == 2 })

	if err := p.Unsubscribe(ctx, "up", "test://a"); err != nil {
		t.Fatal(err)
	}
	if n := u.unsubs.Load(); n != 0 {
		t.Errorf("first of two Unsubscribes reached the upstream (%d)", n)
	}
	if err := p.Unsubscribe(ctx, "up", "test://a"); err != nil {
		t.Fatal(err)
	}
	if n := u.unsubs.Load(); n != 1 {
		t.Errorf("last Unsubscribe sent %d resources/unsubscribe, want 1", n)
	}
	if err := p.Unsubscribe(ctx, "up", "test://a"); err != nil {
		t.Errorf("unsubscribing again: %v", err)
	}
}

func TestSubscribeUnsupported(t *testing.T) {
	f := newFake(t, "http") // declares resources without subscribe
	p := newPool(t, Config{}, f.spec("up"))
	err := p.Subscribe(context.Background(), "up", "test://static")
	if !errors.Is(err, ErrSubscribeUnsupported) {
		t.Errorf("Subscribe = %v, want ErrSubscribeUnsupported", err)
	}
}
