package federation

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// fakeUpstreams serves fixed lists; CallTool echoes the server and tool.
type fakeUpstreams struct {
	mu        sync.Mutex
	tools     map[string][]mcp.Tool
	prompts   map[string][]mcp.Prompt
	resources map[string][]mcp.Resource
	hang      map[string]bool
	lists     int
	call      func(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error)
}

var _ Upstreams = (*fakeUpstreams)(nil)

func newFake() *fakeUpstreams {
	return &fakeUpstreams{tools: map[string][]mcp.Tool{}, prompts: map[string][]mcp.Prompt{},
		resources: map[string][]mcp.Resource{}, hang: map[string]bool{}}
}

func (u *fakeUpstreams) setTools(server string, names ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var tools []mcp.Tool
	for _, n := range names {
		tools = append(tools, mcp.NewTool(n, mcp.WithDescription("tool "+n), mcp.WithString("message")))
	}
	u.tools[server] = tools
}

func (u *fakeUpstreams) wait(ctx context.Context, server string) error {
	u.mu.Lock()
	hang := u.hang[server]
	u.lists++
	u.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("upstream %s: %w", server, ctx.Err())
	}
	return nil
}

func (u *fakeUpstreams) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	if err := u.wait(ctx, server); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.tools[server]
	if !ok {
		return nil, fmt.Errorf("upstream %s: %w", server, upstream.ErrUnknownServer)
	}
	return t, nil
}

func (u *fakeUpstreams) CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error) {
	if u.call != nil {
		return u.call(ctx, server, req, obs)
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(server + "/" + req.Params.Name)},
		StructuredContent: map[string]any{"server": server, "tool": req.Params.Name, "args": req.Params.Arguments},
	}, nil
}

func (u *fakeUpstreams) ListResources(ctx context.Context, server string) ([]mcp.Resource, error) {
	if err := u.wait(ctx, server); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.resources[server], nil
}

func (u *fakeUpstreams) ListResourceTemplates(ctx context.Context, server string) ([]mcp.ResourceTemplate, error) {
	if err := u.wait(ctx, server); err != nil {
		return nil, err
	}
	return []mcp.ResourceTemplate{mcp.NewResourceTemplate("test://"+server+"/{id}", "item")}, nil
}

func (u *fakeUpstreams) ReadResource(ctx context.Context, server string, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return &mcp.ReadResourceResult{Contents: []mcp.ResourceContents{
		mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: server + " says hi"},
	}}, nil
}

func (u *fakeUpstreams) ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error) {
	if err := u.wait(ctx, server); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.prompts[server], nil
}

func (u *fakeUpstreams) GetPrompt(ctx context.Context, server string, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	return &mcp.GetPromptResult{Description: server + "/" + req.Params.Name, Messages: []mcp.PromptMessage{
		mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("hello from "+server)),
	}}, nil
}

func (u *fakeUpstreams) Complete(ctx context.Context, server string, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ref, _ := req.Params.Ref.(mcp.PromptReference)
	return &mcp.CompleteResult{Completion: mcp.Completion{Values: []string{server + ":" + ref.Name}}}, nil
}

type principalKey struct{}

// testPrincipal reads the principal the test middleware stored.
func testPrincipal(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// withPrincipal plays the gateway's auth middleware: X-Test-Principal.
func withPrincipal(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), principalKey{}, r.Header.Get("X-Test-Principal"))
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// newTestFederation returns a federation over u with servers registered,
// served by an httptest server.
func newTestFederation(t testing.TB, u Upstreams, cfg Config, servers ...Server) (*Federation, *httptest.Server) {
	t.Helper()
	cfg.Upstreams = u
	if cfg.Principal == nil {
		cfg.Principal = testPrincipal
	}
	if cfg.ListTimeout == 0 {
		cfg.ListTimeout = 2 * time.Second
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.SetServers(servers)
	ts := httptest.NewServer(withPrincipal(f.Handler()))
	t.Cleanup(func() {
		ts.Close()
		_ = f.Close()
	})
	return f, ts
}

type era int

const (
	modern era = iota
	legacy
	legacyListening // legacy with the standalone GET stream open
)

func (e era) String() string {
	if e == legacy {
		return "2025-11-25"
	}
	return "2026-07-28"
}

// dial connects an mcp-go client to url as principal.
func dial(t testing.TB, url string, e era, principal string, headers map[string]string) *client.Client {
	t.Helper()
	h := map[string]string{"X-Test-Principal": principal}
	for k, v := range headers {
		h[k] = v
	}
	topts := []transport.StreamableHTTPCOption{transport.WithHTTPHeaders(h)}
	if e == legacyListening {
		//lint:ignore SA1019 2025-era clients get notifications on the GET stream
		topts = append(topts, transport.WithContinuousListening())
		e = legacy
	}
	tr, err := transport.NewStreamableHTTP(url, topts...)
	if err != nil {
		t.Fatal(err)
	}
	var opts []client.ClientOption
	if e == legacy {
		opts = append(opts, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	}
	c := client.NewClient(tr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Start's context lives as long as the client's GET stream.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func toolNames(tools []mcp.Tool) []string {
	var out []string
	for _, t := range tools {
		out = append(out, t.Name)
	}
	return out
}
