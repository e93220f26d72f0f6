package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// newTestLogger returns a JSON logger at debug level writing to w.
func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawRequest writes req on a new connection to baseURL and returns the response status.
func rawRequest(t testing.TB, baseURL, req string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestLogsRedactSecretsAndArguments drives a tool call with credentials and arguments
// through every path (register with an upstream credential, a virtual key, tools/call
// over /mcp and over REST, a failing call) with the logger at debug level, and checks that
// no credential, key or tool argument reaches the JSON logs, while the request id does.
func TestLogsRedactSecretsAndArguments(t *testing.T) {
	up := newUpstream(t, "vault", "echo")
	g := newTestGateway(t, func(c *Config) { c.SaltKey = "test-salt" })
	r := g.admin(t, "POST", "/v1/mcp/server", map[string]any{"server_name": "vault", "url": up, "transport": "http",
		"auth_type": "bearer_token", "allow_all_keys": true, "credentials": map[string]any{"auth_value": "sk-upstream-credential-value"}})
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "logs"}), 200)
	key := k["key"].(string)
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})
	c := dialMCP(t, g.url+"/mcp", true, map[string]string{"Authorization": "Bearer " + key, "X-Request-Id": "req-logs-1"})
	if got := callText(t, c, "vault-echo", "argument-secret-value"); !strings.Contains(got, "argument-secret-value") {
		t.Fatalf("tool call: %q", got)
	}
	r = g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "vault-echo", "arguments": map[string]any{"message": "rest-argument-secret"}},
		"Authorization", "Bearer "+key)
	if r.status != 200 {
		t.Fatalf("REST call: %d %s", r.status, r.body)
	}
	r = g.do(t, "POST", "/mcp-rest/tools/call", map[string]any{"name": "vault-nosuchtool", "arguments": map[string]any{"message": "failed-argument-secret"}},
		"Authorization", "Bearer "+key)
	if r.status == 200 {
		t.Fatalf("call of a missing tool: %d %s", r.status, r.body)
	}

	logs := g.logs.String()
	for _, secret := range []string{key, testMasterKey, "sk-upstream-credential-value", "test-salt",
		"argument-secret-value", "rest-argument-secret", "failed-argument-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	if !strings.Contains(logs, `"request_id":"req-logs-1"`) {
		t.Errorf("the caller's request id is not in the logs")
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}
