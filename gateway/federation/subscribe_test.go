package federation

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/gateway/upstream"
)

const watchedURI = "test://watched"

// watchedUpstream is an mcp-go upstream that offers resource subscriptions
// on one resource, counts resources/subscribe and unsubscribe, and can announce
// an update.
type watchedUpstream struct {
	*httptest.Server
	mcp           *server.MCPServer
	subs, unsubs  atomic.Int32
	lastSubscribe atomic.Value // string
}

func newWatchedUpstream(t testing.TB) *watchedUpstream {
	t.Helper()
	u := &watchedUpstream{}
	h := &server.Hooks{}
	h.AddAfterSubscribe(func(_ context.Context, _ any, r *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		u.lastSubscribe.Store(r.Params.URI)
		u.subs.Add(1)
	})
	h.AddAfterUnsubscribe(func(context.Context, any, *mcp.UnsubscribeRequest, *mcp.EmptyResult) { u.unsubs.Add(1) })
	u.mcp = server.NewMCPServer("watched", "1.0.0", server.WithResourceCapabilities(true, true), server.WithHooks(h))
	u.mcp.AddResource(mcp.NewResource(watchedURI, "watched", mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: watchedURI, MIMEType: "text/plain", Text: "v1"}}, nil
		})
	u.Server = httptest.NewServer(server.NewStreamableHTTPServer(u.mcp))
	t.Cleanup(u.Close)
	return u
}

// updated announces a change of the watched resource to every session.
func (u *watchedUpstream) updated() {
	u.mcp.SendNotificationToAllClients(string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": watchedURI})
}

// updates collects notifications/resources/updated URIs a client receives.
type updates struct {
	mu   sync.Mutex
	uris []string
}

func (u *updates) watch(c *client.Client) {
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationResourceUpdated) {
			u.mu.Lock()
			u.uris = append(u.uris, n.Params.AdditionalFields["uri"].(string))
			u.mu.Unlock()
		}
	})
}

func (u *updates) get() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.uris...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func subscribe(c *client.Client, uri string) error {
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	//lint:ignore SA1019 the 2025-era RPC under test
	return c.Subscribe(context.Background(), req)
}

func unsubscribe(c *client.Client, uri string) error {
	req := mcp.UnsubscribeRequest{}
	req.Params.URI = uri
	//lint:ignore SA1019 the 2025-era RPC under test
	return c.Unsubscribe(context.Background(), req)
}

func TestResourceSubscriptions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	up := newWatchedUpstream(t)
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "w", URL: up.URL})

	// On the single-server route the client uses the upstream's URI; on the
	// aggregate route the federated one. Both share one upstream subscription.
	single := dial(t, ts.URL+"/mcp/w", legacyListening, "p", nil)
	agg := dial(t, ts.URL+"/mcp", legacyListening, "p", nil)
	if caps := single.GetServerCapabilities(); caps.Resources == nil || !caps.Resources.Subscribe {
		t.Fatalf("initialize does not advertise resources.subscribe: %+v", caps.Resources)
	}
	res, err := agg.ListResources(context.Background(), mcp.ListResourcesRequest{})
	if err != nil || len(res.Resources) != 1 {
		t.Fatalf("list resources on /mcp: %+v, %v", res, err)
	}
	fedURI := res.Resources[0].URI
	if fedURI == watchedURI {
		t.Fatalf("aggregate route shows the upstream URI %q unfederated", fedURI)
	}
	var gotSingle, gotAgg updates
	gotSingle.watch(single)
	gotAgg.watch(agg)

	if err := subscribe(single, watchedURI); err != nil {
		t.Fatalf("subscribe on /mcp/w: %v", err)
	}
	if err := subscribe(agg, fedURI); err != nil {
		t.Fatalf("subscribe on /mcp: %v", err)
	}
	if n := up.subs.Load(); n != 1 {
		t.Errorf("upstream got %d resources/subscribe, want 1 shared by both sessions", n)
	}
	if got, _ := up.lastSubscribe.Load().(string); got != watchedURI {
		t.Errorf("upstream subscribed to %q, want %q", got, watchedURI)
	}

	up.updated()
	waitFor(t, "both sessions to get the update", func() bool {
		return len(gotSingle.get()) == 1 && len(gotAgg.get()) == 1
	})
	if g := gotSingle.get()[0]; g != watchedURI {
		t.Errorf("single route got update for %q, want %q", g, watchedURI)
	}
	if g := gotAgg.get()[0]; g != fedURI {
		t.Errorf("aggregate route got update for %q, want %q", g, fedURI)
	}

	// The first to leave keeps the upstream subscription for the other.
	if err := unsubscribe(single, watchedURI); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if n := up.unsubs.Load(); n != 0 {
		t.Errorf("upstream unsubscribed while a session still listens (%d)", n)
	}
	up.updated()
	waitFor(t, "the remaining session to get the second update", func() bool { return len(gotAgg.get()) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(gotSingle.get()); n != 1 {
		t.Errorf("unsubscribed session got %d updates, want 1", n)
	}
	// The last one ends it upstream.
	if err := unsubscribe(agg, fedURI); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if n := up.unsubs.Load(); n != 1 {
		t.Errorf("upstream got %d resources/unsubscribe, want 1", n)
	}
	// Unsubscribing again, or from something never subscribed, is a no-op.
	if err := unsubscribe(agg, fedURI); err != nil {
		t.Errorf("second unsubscribe: %v", err)
	}

	// A URI the caller cannot see is refused, naming it.
	err = subscribe(agg, "toolgate://nobody/x")
	if err == nil || !strings.Contains(err.Error(), "toolgate://nobody/x") {
		t.Errorf("subscribe to an unknown resource: %v, want an error naming it", err)
	}
}

func TestResourceSubscriptionEndsWithSession(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	up := newWatchedUpstream(t)
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "w", URL: up.URL})
	c := dial(t, ts.URL+"/mcp/w", legacyListening, "p", nil)
	if err := subscribe(c, watchedURI); err != nil {
		t.Fatal(err)
	}
	// DELETE ends the session (sent by hand: mcp-go's client sends its
	// DELETE without the configured headers, so without the principal).
	req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/mcp/w", nil)
	req.Header.Set("Mcp-Session-Id", c.GetTransport().(*transport.StreamableHTTP).GetSessionId())
	req.Header.Set("X-Test-Principal", "p")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	waitFor(t, "the upstream subscription to end with the session", func() bool { return up.unsubs.Load() == 1 })
}

func TestResourceSubscribeUnsupportedUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	a := realUpstream(t, "a") // no resources capability
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "a", URL: a.URL})
	c := dial(t, ts.URL+"/mcp/a", legacy, "p", nil)
	err := subscribe(c, "test://x")
	if err == nil || !strings.Contains(err.Error(), `upstream "a"`) || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("subscribe on an upstream without subscriptions: %v, want an error naming the server", err)
	}
}

// TestDiscoverSingleRoute: a 2026-07-28 client discovering a single-server
// route sees that server's name, as initialize shows it to 2025 clients.
func TestDiscoverSingleRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	up := newWatchedUpstream(t)
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "w", URL: up.URL})
	for route, want := range map[string]string{"/mcp/w": "w", "/mcp": "toolgate"} {
		body := `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{` +
			`"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},` +
			`"io.modelcontextprotocol/clientCapabilities":{}}}}`
		req, _ := http.NewRequest(http.MethodPost, ts.URL+route, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "server/discover")
		req.Header.Set("X-Test-Principal", "p")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Result struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			} `json:"result"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %v: %s", route, err, b)
		}
		var info mcp.Implementation
		_ = json.Unmarshal(out.Result.Meta[mcp.MetaKeyServerInfo], &info)
		if info.Name != want {
			t.Errorf("%s: server/discover serverInfo.name = %q, want %q (%s)", route, info.Name, want, b)
		}
	}
}

// TestRebindingJSON: a loopback listener refuses a non-loopback Host with a
// JSON body naming the header.
func TestRebindingJSON(t *testing.T) {
	_, ts := newTestFederation(t, newFake(), Config{})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Host = "evil.example:80"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://evil.example:80")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Message, Param string } `json:"error"`
	}
	if resp.StatusCode != http.StatusForbidden || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Error.Param != "Host" {
		t.Errorf("got %d %+v, want 403 JSON naming Host", resp.StatusCode, body)
	}
}

// TestResourceSubscriptionOverSSE: a legacy SSE session subscribes with the federated URI,
// gets the update on its stream, and its subscription ends with the stream.
func TestResourceSubscriptionOverSSE(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	up := newWatchedUpstream(t)
	_, ts := realFederation(t, Config{}, upstream.Spec{Name: "w", URL: up.URL})
	c, err := client.NewSSEMCPClient(ts.URL+"/mcp/sse", client.WithHeaders(map[string]string{"X-Test-Principal": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	res, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || len(res.Resources) != 1 {
		t.Fatalf("list resources over SSE: %+v, %v", res, err)
	}
	var got updates
	got.watch(c)
	if err := subscribe(c, res.Resources[0].URI); err != nil {
		t.Fatalf("subscribe over SSE: %v", err)
	}
	up.updated()
	waitFor(t, "the update on the SSE stream", func() bool { return len(got.get()) == 1 })
	if g := got.get()[0]; g != res.Resources[0].URI {
		t.Errorf("update for %q, want %q", g, res.Resources[0].URI)
	}
	_ = c.Close()
	waitFor(t, "the upstream subscription to end with the SSE stream", func() bool { return up.unsubs.Load() == 1 })
}
