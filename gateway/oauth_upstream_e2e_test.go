package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// e2eClock is the time shared by the gateway and the upstream's authorization server, so
// a test can let access tokens expire.
type e2eClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *e2eClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *e2eClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// oauthUpstream is an upstream MCP server protected by its own OAuth authorization server
// (auto-approving, as the user named by the browser's "upstream_user" cookie there). The
// MCP server at /mcp accepts only that AS's access tokens; tool "whoami" answers the
// token's subject, "notes_<user>" is listed only to that user, and every request's
// headers are recorded.
type oauthUpstream struct {
	URL   string
	as    *oauth.Server
	store *oauthtest.MemStore

	mu      sync.Mutex
	headers []http.Header
	subject map[string]string // access token -> subject, as the MCP server saw them
	grants  map[string]int    // token requests by grant_type
}

type upstreamSubjectKey struct{}

func newOAuthUpstream(t *testing.T, clock *e2eClock) *oauthUpstream {
	t.Helper()
	u := &oauthUpstream{store: oauthtest.NewMemStore(), subject: map[string]string{}, grants: map[string]int{}}
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	u.URL = ts.URL
	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	u.as, err = oauth.NewServer(oauth.ServerConfig{
		Resource: res, Store: u.store, Now: clock.Now, AccessTokenTTL: time.Hour,
		AutoApprove: func(r *http.Request) (string, bool) {
			c, err := r.Cookie("upstream_user")
			if err != nil {
				return "", false
			}
			return c.Value, true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range u.as.Paths() {
		if p == "/token" {
			mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ParseForm() == nil {
					u.mu.Lock()
					u.grants[r.PostForm.Get("grant_type")]++
					u.mu.Unlock()
				}
				u.as.ServeHTTP(w, r)
			}))
			continue
		}
		mux.Handle(p, u.as)
	}

	hooks := &server.Hooks{}
	hooks.AddAfterListTools(func(ctx context.Context, _ any, _ *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
		sub, _ := ctx.Value(upstreamSubjectKey{}).(string)
		res.Tools = slices.DeleteFunc(res.Tools, func(tool mcp.Tool) bool {
			owner, mine := strings.CutPrefix(tool.Name, "notes_")
			return mine && owner != sub
		})
	})
	ms := server.NewMCPServer("crm", "1", server.WithToolCapabilities(false), server.WithHooks(hooks),
		server.WithPromptCapabilities(false), server.WithResourceCapabilities(false, false), server.WithCompletions(),
		server.WithPromptCompletionProvider(subjectCompleter{}))
	whoami := func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		sub, _ := ctx.Value(upstreamSubjectKey{}).(string)
		return mcp.NewToolResultText(sub), nil
	}
	ms.AddPrompt(mcp.NewPrompt("greeting", mcp.WithArgument("tone")), func(ctx context.Context, _ mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		sub, _ := ctx.Value(upstreamSubjectKey{}).(string)
		return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(sub))}}, nil
	})
	ms.AddResource(mcp.NewResource("crm://me", "me"), func(ctx context.Context, r mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		sub, _ := ctx.Value(upstreamSubjectKey{}).(string)
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: r.Params.URI, Text: sub}}, nil
	})
	ms.AddTool(mcp.NewTool("whoami"), whoami)
	ms.AddTool(mcp.NewTool("notes_alice"), whoami)
	ms.AddTool(mcp.NewTool("notes_bob"), whoami)
	streamable := server.NewStreamableHTTPServer(ms, server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
		return context.WithValue(ctx, upstreamSubjectKey{}, r.Context().Value(upstreamSubjectKey{}))
	}))
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g, err := u.as.Introspect(r.Context(), tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		u.mu.Lock()
		u.subject[tok] = g.Subject
		u.mu.Unlock()
		streamable.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamSubjectKey{}, g.Subject)))
	}))
	return u
}

// subjectCompleter completes any prompt argument with the caller's subject.
type subjectCompleter struct{}

func (subjectCompleter) CompletePromptArgument(ctx context.Context, _ string, _ mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	sub, _ := ctx.Value(upstreamSubjectKey{}).(string)
	return &mcp.Completion{Values: []string{sub}}, nil
}

// addClient registers a client at the upstream's AS: public when secret is empty.
func (u *oauthUpstream) addClient(t *testing.T, id, secret string, redirectURIs ...string) {
	t.Helper()
	c := &store.OAuthClient{ID: id, RedirectURIs: redirectURIs, ResponseTypes: []string{"code"},
		GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}, TokenEndpointAuthMethod: "none"}
	if secret != "" {
		h := sha256.Sum256([]byte(secret))
		c.SecretHash = hex.EncodeToString(h[:])
		c.TokenEndpointAuthMethod = "client_secret_basic"
		c.GrantTypes = []string{oauth.GrantClientCredentials}
	}
	if err := u.store.CreateOAuthClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func (u *oauthUpstream) grantCount(grant string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.grants[grant]
}

// tokensOf returns the distinct access tokens the MCP server saw for subject.
func (u *oauthUpstream) tokensOf(subject string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for tok, sub := range u.subject {
		if sub == subject {
			out = append(out, tok)
		}
	}
	slices.Sort(out)
	return out
}

// newClockedOAuthGateway is newOAuthGateway with a clock of the test's.
func newClockedOAuthGateway(t *testing.T, clock *e2eClock) *testGateway {
	t.Helper()
	db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := httptest.NewUnstartedServer(nil)
	cfg := OAuthConfig{AuthorizationServer: true, PublicURL: "http://" + ts.Listener.Addr().String()}
	cfg.Fetch.AllowLoopback = true
	logs := &syncBuffer{}
	s, err := New(Config{Store: db, MasterKey: testMasterKey, Logger: newTestLogger(logs), KeyCacheTTL: time.Minute,
		OAuth: cfg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &testGateway{s: s, db: db, url: ts.URL, logs: logs}
}

// mcpAs connects an MCP client to the gateway's route with a toolgate key.
func mcpAs(t *testing.T, routeURL, key string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(routeURL, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize %s: %v", routeURL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func e2eTools(t *testing.T, c *client.Client) ([]string, *mcp.Meta) {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names, res.Meta
}

func e2eCall(c *client.Client, name string) (string, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) == 0 {
		return "", errors.New("tool error")
	}
	text, _ := res.Content[0].(mcp.TextContent)
	return text.Text, nil
}

var e2eCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// authorizeUpstream runs the gateway's upstream connect flow in a browser that is signed
// in at the upstream as user: the connect page, the key, the upstream's (auto-approving)
// authorization endpoint, the gateway's callback. It returns the callback page's status.
func authorizeUpstream(t *testing.T, connectURL, key, upstreamURL, user string) int {
	t.Helper()
	b := oauthtest.Browser()
	up, _ := url.Parse(upstreamURL)
	b.Jar.SetCookies(up, []*http.Cookie{{Name: "upstream_user", Value: user}})
	resp, err := b.Get(connectURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := e2eCSRF.FindSubmatch(body)
	if m == nil {
		t.Fatalf("connect page %s: %d %s", connectURL, resp.StatusCode, body)
	}
	cu, _ := url.Parse(connectURL)
	resp, err = b.PostForm(cu.Scheme+"://"+cu.Host+cu.Path, url.Values{"server": {cu.Query().Get("server")},
		"csrf": {string(m[1])}, "key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for hops := 0; resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound; hops++ {
		if hops > 5 {
			t.Fatal("too many redirects")
		}
		if resp, err = b.Get(resp.Header.Get("Location")); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return resp.StatusCode
}

// TestUpstreamOAuthPerUserEndToEnd: two toolgate users each authorize an oauth2
// (authorization-code) upstream through the gateway's connect flow, then list and call its
// tools through /mcp; the upstream sees each user's own token and never a toolgate key. A
// user who has not authorized is told where to. Expired access tokens are refreshed.
func TestUpstreamOAuthPerUserEndToEnd(t *testing.T) {
	clock := &e2eClock{t: time.Now()}
	up := newOAuthUpstream(t, clock)
	g := newClockedOAuthGateway(t, clock)
	up.addClient(t, "gw", "", g.url+oauth.CallbackPath)
	ctx := context.Background()
	if err := g.db.CreateMCPServer(ctx, &store.MCPServer{Name: "crm", URL: up.URL + "/mcp", Transport: store.TransportHTTP,
		AuthType: store.AuthOAuth2, OAuth: store.MCPServerOAuth{ClientID: "gw", AuthorizationURL: up.URL + "/authorize",
			TokenURL: up.URL + "/token", Scopes: []string{"mcp"}}}); err != nil {
		t.Fatal(err)
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"alice": "sk-alice-0001", "bob": "sk-bob-00002", "carol": "sk-carol-0003"}
	for _, k := range keys {
		g.addKey(t, k, func(k *store.Key) { k.Permission.MCPServers = []string{"crm"} })
	}
	clients := map[string]*client.Client{}
	for user, k := range keys {
		clients[user] = mcpAs(t, g.url+"/mcp", k)
	}

	// Before authorizing: the server is left out of the list, whose _meta names the URL to
	// open; a call to one of its tools answers an error carrying that URL.
	names, meta := e2eTools(t, clients["alice"])
	if len(names) != 0 {
		t.Errorf("alice's tools before authorizing: %v, want none", names)
	}
	var connectURL string
	if meta != nil {
		if m, ok := meta.AdditionalFields[federation.MetaAuthorizationRequired].(map[string]any); ok {
			connectURL, _ = m["crm"].(string)
		}
	}
	if !strings.HasPrefix(connectURL, g.url+oauth.ConnectPath+"?server=") {
		t.Fatalf("tools/list _meta %+v: want %s naming crm's connect URL", meta, federation.MetaAuthorizationRequired)
	}
	if _, err := e2eCall(clients["alice"], "crm-whoami"); err == nil || !strings.Contains(err.Error(), connectURL) {
		t.Errorf("call before authorizing: got %v, want an error carrying %s", err, connectURL)
	}
	// The REST route says the same, with 403.
	r := g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "crm-whoami"}, "Authorization", "Bearer "+keys["alice"])
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), connectURL) {
		t.Errorf("REST call before authorizing: got %d %s, want 403 carrying %s", r.status, r.body, connectURL)
	}

	for _, user := range []string{"alice", "bob"} {
		if status := authorizeUpstream(t, connectURL, keys[user], up.URL, user); status != http.StatusOK {
			t.Fatalf("%s's connect flow ended with %d", user, status)
		}
	}
	for user, want := range map[string][]string{"alice": {"crm-notes_alice", "crm-whoami"}, "bob": {"crm-notes_bob", "crm-whoami"}} {
		names, _ := e2eTools(t, clients[user])
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("%s's tools after authorizing (-want +got):\n%s", user, diff)
		}
		if got, err := e2eCall(clients[user], "crm-whoami"); err != nil || got != user {
			t.Errorf("%s calls crm-whoami: got %q, %v; want the upstream to see %s's token", user, got, err, user)
		}
		if got, err := e2eCall(clients[user], "crm-notes_"+user); err != nil || got != user {
			t.Errorf("%s calls crm-notes_%s: got %q, %v", user, user, got, err)
		}
	}
	// Every other MCP method carries the caller's own upstream token too.
	for _, user := range []string{"alice", "bob"} {
		c := clients[user]
		pl, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
		if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "crm-greeting" {
			t.Errorf("%s's prompts: %+v, %v", user, pl, err)
		}
		gp := mcp.GetPromptRequest{}
		gp.Params.Name = "crm-greeting"
		if pr, err := c.GetPrompt(ctx, gp); err != nil || pr.Messages[0].Content.(mcp.TextContent).Text != user {
			t.Errorf("%s's prompts/get: %+v, %v; want the upstream to see %s", user, pr, err, user)
		}
		rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
		if err != nil || len(rl.Resources) != 1 || rl.Resources[0].URI != "toolgate://crm/crm://me" {
			t.Fatalf("%s's resources: %+v, %v", user, rl, err)
		}
		rr := mcp.ReadResourceRequest{}
		rr.Params.URI = rl.Resources[0].URI
		if rd, err := c.ReadResource(ctx, rr); err != nil || rd.Contents[0].(mcp.TextResourceContents).Text != user {
			t.Errorf("%s's resources/read: %+v, %v", user, rd, err)
		}
		cr := mcp.CompleteRequest{}
		cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "crm-greeting"}
		cr.Params.Argument = mcp.CompleteArgument{Name: "tone", Value: ""}
		if cres, err := c.Complete(ctx, cr); err != nil || !cmp.Equal(cres.Completion.Values, []string{user}) {
			t.Errorf("%s's completion/complete: %+v, %v", user, cres, err)
		}
	}
	// Tool names resolve through the caller's own list.
	if _, err := e2eCall(clients["bob"], "crm-notes_alice"); err == nil {
		t.Error("bob called alice's tool")
	}
	// carol never authorized: still told where to go.
	if names, meta := e2eTools(t, clients["carol"]); len(names) != 0 || meta == nil || meta.AdditionalFields[federation.MetaAuthorizationRequired] == nil {
		t.Errorf("carol's list: %v %+v, want no tools and %s", names, meta, federation.MetaAuthorizationRequired)
	}
	if _, err := e2eCall(clients["carol"], "crm-whoami"); err == nil || !strings.Contains(err.Error(), connectURL) {
		t.Errorf("carol's call: got %v, want an error carrying %s", err, connectURL)
	}
	gp := mcp.GetPromptRequest{}
	gp.Params.Name = "crm-greeting"
	if _, err := clients["carol"].GetPrompt(ctx, gp); err == nil || !strings.Contains(err.Error(), connectURL) {
		t.Errorf("carol's prompts/get: got %v, want an error carrying %s", err, connectURL)
	}
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = "toolgate://crm/crm://me"
	if _, err := clients["carol"].ReadResource(ctx, rr); err == nil || !strings.Contains(err.Error(), connectURL) {
		t.Errorf("carol's resources/read: got %v, want an error carrying %s", err, connectURL)
	}
	// The single-server route works the same way.
	own := mcpAs(t, g.url+"/crm/mcp", keys["bob"])
	if got, err := e2eCall(own, "whoami"); err != nil || got != "bob" {
		t.Errorf("bob on /crm/mcp: got %q, %v", got, err)
	}

	// Access tokens expire; the gateway refreshes them with the refresh token.
	before := map[string][]string{"alice": up.tokensOf("alice"), "bob": up.tokensOf("bob")}
	refreshes := up.grantCount(oauth.GrantRefreshToken)
	clock.Advance(2 * time.Hour)
	for _, user := range []string{"alice", "bob"} {
		if got, err := e2eCall(clients[user], "crm-whoami"); err != nil || got != user {
			t.Errorf("%s after the access token expired: got %q, %v", user, got, err)
		}
		if after := up.tokensOf(user); len(after) != len(before[user])+1 {
			t.Errorf("%s's tokens seen upstream: %d before expiry, %d after; want one new (refreshed) token", user, len(before[user]), len(after))
		}
	}
	if got := up.grantCount(oauth.GrantRefreshToken) - refreshes; got != 2 {
		t.Errorf("refresh_token grants after expiry: %d, want 2 (one per user)", got)
	}

	// The pool does not probe an oauth2 upstream without a token (that could only fail and
	// log); its health says why it is unknown.
	r = g.do(t, "GET", "/v1/mcp/server/health", nil, "Authorization", "Bearer "+testMasterKey)
	var health []struct {
		ServerName       string  `json:"server_name"`
		Status           string  `json:"status"`
		HealthCheckError *string `json:"health_check_error"`
	}
	if err := json.Unmarshal(r.body, &health); err != nil || len(health) != 1 || health[0].Status != store.HealthUnknown ||
		health[0].HealthCheckError == nil || !strings.Contains(*health[0].HealthCheckError, "oauth2") {
		t.Errorf("health: %s; want crm unknown with a note naming oauth2", r.body)
	}

	// No toolgate key (nor the gateway's Authorization) ever reached the upstream, and no
	// request came without a token.
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.headers) == 0 {
		t.Fatal("the upstream saw no requests")
	}
	for _, h := range up.headers {
		if h.Get("Authorization") == "" {
			t.Errorf("upstream received a request without a token: %v", h)
		}
		for name, vals := range h {
			for _, v := range vals {
				for _, k := range append(slices.Collect(mapsValues(keys)), testMasterKey) {
					if strings.Contains(v, k) {
						t.Errorf("upstream received a toolgate key in %s", name)
					}
				}
			}
		}
	}
}

func mapsValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// TestUpstreamOAuthClientCredentialsEndToEnd: an oauth2 upstream with the
// client-credentials flow gets one token, used for the gateway's list and every caller's
// calls until it expires, then one new token.
func TestUpstreamOAuthClientCredentialsEndToEnd(t *testing.T) {
	clock := &e2eClock{t: time.Now()}
	up := newOAuthUpstream(t, clock)
	g := newClockedOAuthGateway(t, clock)
	up.addClient(t, "m2m", "m2m-secret")
	ctx := context.Background()
	sealed, err := g.s.box.Seal([]byte(`{"client_secret":"m2m-secret"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.db.CreateMCPServer(ctx, &store.MCPServer{Name: "m2m", URL: up.URL + "/mcp", Transport: store.TransportHTTP,
		AuthType: store.AuthOAuth2, Credentials: sealed,
		OAuth: store.MCPServerOAuth{ClientID: "m2m", TokenURL: up.URL + "/token", GrantType: oauth.GrantClientCredentials}}); err != nil {
		t.Fatal(err)
	}
	if err := g.s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	keys := []string{"sk-user-a-0001", "sk-user-b-0002"}
	for _, k := range keys {
		g.addKey(t, k, func(k *store.Key) { k.Permission.MCPServers = []string{"m2m"} })
	}
	for _, k := range keys {
		c := mcpAs(t, g.url+"/mcp", k)
		if names, _ := e2eTools(t, c); !cmp.Equal(names, []string{"m2m-whoami"}) {
			t.Errorf("tools: %v, want [m2m-whoami]", names)
		}
		for range 3 {
			if got, err := e2eCall(c, "m2m-whoami"); err != nil || got != "client:m2m" {
				t.Errorf("call: got %q, %v; want the upstream to see the client's token", got, err)
			}
		}
	}
	if got := up.grantCount(oauth.GrantClientCredentials); got != 1 {
		t.Errorf("client_credentials grants for 2 callers' lists and 6 calls: %d, want 1 (cached)", got)
	}
	clock.Advance(2 * time.Hour)
	c := mcpAs(t, g.url+"/mcp", keys[0])
	if got, err := e2eCall(c, "m2m-whoami"); err != nil || got != "client:m2m" {
		t.Errorf("call after expiry: got %q, %v", got, err)
	}
	if got := up.grantCount(oauth.GrantClientCredentials); got != 2 {
		t.Errorf("client_credentials grants after the token expired: %d, want 2", got)
	}
	if toks := up.tokensOf("client:m2m"); len(toks) != 2 {
		t.Errorf("distinct tokens seen upstream: %d, want 2 (one per expiry)", len(toks))
	}
}
