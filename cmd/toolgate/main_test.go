package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// newUpstream starts an in-process MCP server with one tool and returns its URL.
func newUpstream(t testing.TB, name string) string {
	t.Helper()
	s := server.NewMCPServer(name, "1")
	s.AddTool(mcp.NewTool("hello"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("hello from " + name), nil
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp"
}

// mustRunMain starts a Main on a free port with cfg and closes it at cleanup.
func mustRunMain(t testing.TB, cfg Config) *Main {
	t.Helper()
	m := NewMain(cfg)
	m.Logger = slog.New(slog.DiscardHandler)
	m.Stderr = io.Discard
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func get(t testing.TB, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMainServesAndReloads(t *testing.T) {
	one := newUpstream(t, "one")
	two := newUpstream(t, "two")
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	write := func(servers string) {
		body := fmt.Sprintf("general_settings:\n  master_key: sk-main-test\n  database_url: sqlite:%s\nmcp_servers:\n%s",
			filepath.Join(dir, "t.db"), servers)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("  one:\n    url: " + one + "\n")
	cfg, err := loadConfig("serve", []string{"--config", file, "--host", "127.0.0.1", "--port", "0"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := mustRunMain(t, cfg)
	base := "http://" + m.Addr

	if code, body := get(t, base+"/health/readiness", ""); code != 200 || !strings.Contains(body, `"connected"`) {
		t.Fatalf("readiness: %d %s", code, body)
	}
	names := func() []string {
		_, body := get(t, base+"/v1/mcp/server", "sk-main-test")
		var list []struct {
			ServerName string `json:"server_name"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var out []string
		for _, s := range list {
			out = append(out, s.ServerName)
		}
		return out
	}
	if got := names(); len(got) != 1 || got[0] != "one" {
		t.Fatalf("servers %v, want [one]", got)
	}

	write("  two:\n    url: " + two + "\n")
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); len(got) != 1 || got[0] != "two" {
		t.Fatalf("after reload: servers %v, want [two]", got)
	}
	write("  bad-name:\n    url: " + two + "\n")
	if err := m.Reload(context.Background()); err == nil {
		t.Errorf("reload with an invalid server name succeeded")
	}
	if got := names(); len(got) != 1 || got[0] != "two" {
		t.Errorf("after a failed reload: servers %v, want [two] kept", got)
	}

	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("close did not return")
	}
	if _, err := http.Get(base + "/health/liveliness"); err == nil {
		t.Errorf("still serving after Close")
	}
}

func TestMigrateCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	var out strings.Builder
	code := run([]string{"migrate"}, env(map[string]string{"DATABASE_URL": "sqlite:" + db}), &out, io.Discard)
	if code != 0 || !strings.Contains(out.String(), "migrations applied") {
		t.Fatalf("migrate: code %d, output %q", code, out.String())
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("database not created: %v", err)
	}
}

// TestGracefulShutdown closes the Main while a tool call is in flight: the call finishes.
func TestGracefulShutdown(t *testing.T) {
	s := server.NewMCPServer("slow", "1")
	started := make(chan struct{}, 1)
	s.AddTool(mcp.NewTool("wait"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		return mcp.NewToolResultText("done"), nil
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	cfg := defaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.MasterKey = "sk-graceful-test"
	cfg.DatabaseURL = "sqlite:" + filepath.Join(dir, "t.db")
	cfg.ShutdownGrace = 10 * time.Second
	cfg.MCPServers = nil
	m := mustRunMain(t, cfg)
	base := "http://" + m.Addr
	body := `{"server_name":"slow","url":"` + ts.URL + `/mcp"}`
	req, _ := http.NewRequest("POST", base+"/v1/mcp/server", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-graceful-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("register: %d", resp.StatusCode)
	}

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			req, _ := http.NewRequest("POST", base+"/mcp-rest/tools/call", strings.NewReader(`{"name":"slow-wait"}`))
			req.Header.Set("Authorization", "Bearer sk-graceful-test")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				r.err = err
				break
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r = result{code: resp.StatusCode, body: string(b)}
			if resp.StatusCode == 200 {
				break
			}
			time.Sleep(50 * time.Millisecond) // the upstream may still be connecting
		}
		res <- r
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the tool call never reached the upstream")
	}
	if err := m.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	r := <-res
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, "done") {
		t.Errorf("in-flight call: %d %s %v, want 200 done", r.code, r.body, r.err)
	}
}

// TestMainOnPostgres runs the gateway on Postgres when TOOLGATE_TEST_DATABASE_URL is set,
// in a schema of its own so that it never touches the store suite's tables.
func TestMainOnPostgres(t *testing.T) {
	url := os.Getenv("TOOLGATE_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TOOLGATE_TEST_DATABASE_URL not set")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	const schema = "toolgate_cmd_test"
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	url += sep + "search_path=" + schema
	cfg := defaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.MasterKey = "sk-postgres-test"
	cfg.DatabaseURL = url
	m := mustRunMain(t, cfg)
	if code, body := get(t, "http://"+m.Addr+"/health/readiness", ""); code != 200 || !strings.Contains(body, `"connected"`) {
		t.Errorf("readiness on postgres: %d %s", code, body)
	}
	if code, body := get(t, "http://"+m.Addr+"/v1/mcp/server", "sk-postgres-test"); code != 200 {
		t.Errorf("list servers on postgres: %d %s", code, body)
	}
}

// TestRunSignals runs the real command loop: SIGHUP reloads, SIGTERM shuts down with exit 0.
func TestRunSignals(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("mcp_servers: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"TOOLGATE_MASTER_KEY": "sk-signal-test", "DATABASE_URL": "sqlite:" + filepath.Join(dir, "t.db")})
	_, stderr, code := serveInBackground(t, file, e)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "config reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d, want 0; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
}

// lockedBuffer is a strings.Builder safe for concurrent use.
// serveInBackground runs the real command loop (`toolgate serve --config file`) on a free
// port until it serves, and returns its base URL, its stderr and where its exit code goes.
func serveInBackground(t testing.TB, file string, e func(string) string) (base string, stderr *lockedBuffer, code <-chan int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	stderr = &lockedBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--config", file}, e, io.Discard, stderr)
	}()
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(base + "/health/liveliness"); err == nil {
			resp.Body.Close()
			return base, stderr, exit
		}
		if time.Now().After(deadline) {
			t.Fatalf("never served; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogLinesBufferedUntilWarningOrExit: with log_flush_interval set, info lines (the
// access log) wait in the buffer; an error flushes them, in order, and exit flushes the rest.
func TestLogLinesBufferedUntilWarningOrExit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("general_settings:\n  log_flush_interval: 1m\nmcp_servers: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"TOOLGATE_MASTER_KEY": "sk-logbuf-test", "DATABASE_URL": "sqlite:" + filepath.Join(dir, "t.db")})
	base, stderr, code := serveInBackground(t, file, e)
	if c, _ := get(t, base+"/health/readiness", ""); c != 200 {
		t.Fatalf("readiness %d", c)
	}
	if s := stderr.String(); strings.Contains(s, `"path":"/health/readiness"`) {
		t.Fatalf("an access-log line was written at once with a 1m flush interval:\n%s", s)
	}
	if err := os.WriteFile(file, []byte("mcp_servers: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("the reload error was not written at once; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := stderr.String()
	listening, access, failed := strings.Index(s, "toolgate listening"), strings.Index(s, `"path":"/health/readiness"`), strings.Index(s, "reload failed")
	if listening < 0 || access < 0 || !(listening < access && access < failed) {
		t.Fatalf("want the buffered lines, then the error; stderr:\n%s", s)
	}
	if c, _ := get(t, base+"/health/liveliness", ""); c != 200 {
		t.Fatalf("liveliness %d", c)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
	if s := stderr.String(); !strings.Contains(s, `"path":"/health/liveliness"`) || !strings.Contains(s, "shutting down") {
		t.Fatalf("lines logged before exit were lost; stderr:\n%s", s)
	}
}
