package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// blockingUpstream serves one tool, "work", that signals started and then waits for release
// (or for its context to end, or 15 seconds).
func blockingUpstream(t testing.TB) (url string, started <-chan struct{}, release chan<- struct{}) {
	t.Helper()
	st := make(chan struct{}, 4)
	rel := make(chan struct{})
	s := server.NewMCPServer("slow", "1")
	s.AddTool(mcp.NewTool("work"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		st <- struct{}{}
		select {
		case <-rel:
			return mcp.NewToolResultText("worked"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(15 * time.Second):
			return nil, fmt.Errorf("never released")
		}
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp", st, rel
}

// post sends a JSON body with the bearer key and decodes the JSON answer.
func post(t testing.TB, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// generatedKey is a /key/generate answer: the secret and the key's ID.
type generatedKey struct{ Key, KeyID string }

// generateKey makes a virtual key through base's /key/generate with the admin key.
func generateKey(t testing.TB, base, admin, body string) generatedKey {
	t.Helper()
	status, k := post(t, base+"/key/generate", admin, body)
	key, _ := k["key"].(string)
	id, _ := k["token"].(string)
	if status != 200 || key == "" || id == "" {
		t.Fatalf("/key/generate: %d %v", status, k)
	}
	return generatedKey{Key: key, KeyID: id}
}

// mcpClient connects to url with key, keeping the GET stream open as 2025-era clients do.
func mcpClient(t testing.TB, url, key string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}),
		//lint:ignore SA1019 a 2025-era client keeps the GET stream open; shutdown must end it
		transport.WithContinuousListening())
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	// Start's context also bounds the GET stream: keep it open.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "shutdown-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// callWork calls slow-work and returns the result and error on a channel.
func callWork(c *client.Client) <-chan error {
	out := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := mcp.CallToolRequest{}
		req.Params.Name = "slow-work"
		res, err := c.CallTool(ctx, req)
		switch {
		case err != nil:
			out <- err
		case res.IsError || len(res.Content) == 0:
			out <- fmt.Errorf("tool error: %+v", res)
		case res.Content[0].(mcp.TextContent).Text != "worked":
			out <- fmt.Errorf("result %+v", res.Content)
		default:
			out <- nil
		}
	}()
	return out
}

// startWork starts the blocking tool call and waits until it has reached the upstream.
func startWork(t testing.TB, c *client.Client, started <-chan struct{}) <-chan error {
	t.Helper()
	result := callWork(c)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the tool call never reached the upstream")
	}
	return result
}

// openDB opens the SQLite file a stopped toolgate left behind.
func openDB(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.New(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSIGTERMDuringToolCallLosesNothing sends SIGTERM to the real command loop while a
// priced tool call is running upstream and a client holds an MCP GET stream open. The call
// finishes within the grace and its answer reaches the client; the process exits 0 without
// waiting out the grace for the stream; and the spend row, the key's spend and the audit
// rows are all in the database afterwards.
func TestSIGTERMDuringToolCallLosesNothing(t *testing.T) {
	up, started, release := blockingUpstream(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "t.db")
	file := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`general_settings:
  master_key: sk-sigterm-test
  database_url: sqlite:%s
  shutdown_grace: 60s
mcp_servers:
  slow:
    url: %s
    allow_all_keys: true
    mcp_info:
      mcp_server_cost_info:
        default_cost_per_query: 0.25
`, dbPath, up)
	if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stderr, code := serveInBackground(t, file, env(nil))

	status, k := post(t, base+"/key/generate", "sk-sigterm-test", `{"key_alias":"sigterm","max_budget":10}`)
	if status != 200 {
		t.Fatalf("key/generate: %d %v", status, k)
	}
	key := k["key"].(string)
	c := mcpClient(t, base+"/mcp", key)
	waitTool(t, c, "")
	result := startWork(t, c, started)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown after SIGTERM; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("in-flight call across SIGTERM: %v", err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d, want 0; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return within 30s of a 60s grace (an open MCP stream kept it waiting?); stderr:\n%s", stderr.String())
	}

	db := openDB(t, dbPath)
	ctx := context.Background()
	tool := toolSpendRows(t, db)
	if len(tool) != 1 || tool[0].Spend != 0.25 || tool[0].Status != "success" || tool[0].MCPServer != "slow" || tool[0].MCPTool != "work" {
		t.Fatalf("tool-call spend rows after SIGTERM: %s", spendRows(tool))
	}
	b, err := db.Budget(ctx, store.BudgetRef{Scope: store.BudgetKey, ID: tool[0].KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spend != 0.25 || b.Reserved != 0 {
		t.Errorf("key budget after SIGTERM: spend %v reserved %v, want 0.25 and 0", b.Spend, b.Reserved)
	}
	audit, err := db.AuditLog(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range audit {
		if e.ObjectType == "key" && e.Action == "create" && e.ObjectID == tool[0].KeyID {
			found = true
		}
	}
	if !found {
		t.Errorf("audit row for the key created before SIGTERM missing; audit: %d rows", len(audit))
	}
}

// TestShutdownGraceOverRecordsCutCall: when the grace ends before the call, the call is
// cancelled, the client gets an error, and the spend log still has the call's row
// (status failure, nothing charged) and the budget holds nothing for it.
func TestShutdownGraceOverRecordsCutCall(t *testing.T) {
	up, started, _ := blockingUpstream(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "t.db")
	cfg := defaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.MasterKey = "sk-grace-over-test"
	cfg.DatabaseURL = "sqlite:" + dbPath
	cfg.ShutdownGrace = 200 * time.Millisecond
	cfg.MCPServers = []*store.MCPServer{{Name: "slow", URL: up, AllowAllKeys: true, AvailableOnPublicInternet: true,
		Cost: store.MCPServerCost{DefaultCostPerQuery: 0.25}}}
	m := mustRunMain(t, cfg)
	base := "http://" + m.Addr
	status, k := post(t, base+"/key/generate", cfg.MasterKey, `{"key_alias":"grace","max_budget":10}`)
	if status != 200 {
		t.Fatalf("key/generate: %d %v", status, k)
	}
	c := mcpClient(t, base+"/mcp", k["key"].(string))
	waitTool(t, c, "")
	result := startWork(t, c, started)
	if err := m.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if err := <-result; err == nil {
		t.Errorf("a call cut by the end of the grace succeeded")
	}
	db := openDB(t, dbPath)
	ctx := context.Background()
	tool := toolSpendRows(t, db)
	if len(tool) != 1 || tool[0].Status != "failure" || tool[0].Spend != 0 {
		t.Fatalf("tool-call spend rows after a cut call: %s", spendRows(tool))
	}
	b, err := db.Budget(ctx, store.BudgetRef{Scope: store.BudgetKey, ID: tool[0].KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spend != 0 || b.Reserved != 0 {
		t.Errorf("key budget after a cut call: spend %v reserved %v, want 0 and 0", b.Spend, b.Reserved)
	}
}

// toolSpendRows returns db's spend log rows of MCP tool calls.
func toolSpendRows(t testing.TB, db *sqlite.DB) []*store.SpendLog {
	t.Helper()
	rows, err := db.SpendLogs(context.Background(), store.SpendFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var tool []*store.SpendLog
	for _, r := range rows {
		if r.CallType == store.CallMCPTool {
			tool = append(tool, r)
		}
	}
	return tool
}

func spendRows(rows []*store.SpendLog) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "{%s %s/%s spend=%v status=%s} ", r.CallType, r.MCPServer, r.MCPTool, r.Spend, r.Status)
	}
	return fmt.Sprintf("%d rows: %s", len(rows), b.String())
}

// TestTracesExported: with tracing on, spans reach the OTLP/HTTP endpoint named by
// OTEL_EXPORTER_OTLP_ENDPOINT, at the latest when the Main closes.
func TestTracesExported(t *testing.T) {
	got := make(chan string, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			got <- r.Method + " " + r.URL.Path
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	cfg := defaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.MasterKey = "sk-trace-export-test"
	cfg.DatabaseURL = "sqlite:" + filepath.Join(t.TempDir(), "t.db")
	cfg.Tracing = tracingWanted(nil, os.Getenv)
	if !cfg.Tracing {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT did not turn tracing on")
	}
	m := mustRunMain(t, cfg)
	if code, _ := get(t, "http://"+m.Addr+"/health/readiness", ""); code != 200 {
		t.Fatalf("readiness: %d", code)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req != "POST /v1/traces" {
			t.Errorf("collector got %s, want POST /v1/traces", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no spans reached the OTLP endpoint")
	}
}

func TestTracingWanted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		litellm map[string]any
		env     map[string]string
		want    bool
	}{
		{"default off", nil, nil, false},
		{"litellm otel callback", map[string]any{"callbacks": []any{"prometheus", "otel"}}, nil, true},
		{"otlp endpoint", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", nil, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"sdk disabled", map[string]any{"callbacks": []any{"otel"}}, map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
		{"other callbacks only", map[string]any{"callbacks": []any{"langfuse"}}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracingWanted(tc.litellm, env(tc.env)); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
