package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

const testMasterKey = "sk-test-master"

// testGateway is a started Server on a real SQLite store behind an httptest server.
type testGateway struct {
	s    *Server
	db   *sqlite.DB
	url  string
	logs *syncBuffer
}

func newTestGateway(t testing.TB, mod func(*Config)) *testGateway {
	t.Helper()
	db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logs := &syncBuffer{}
	cfg := Config{Store: db, MasterKey: testMasterKey, Logger: newTestLogger(logs), KeyCacheTTL: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &testGateway{s: s, db: db, url: ts.URL, logs: logs}
}

// response is a decoded HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// errorField returns error.<field> of a LiteLLM error body.
func (r response) errorField(t testing.TB, field string) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	v, _ := e[field].(string)
	return v
}

// do sends a request. headers are name, value pairs; body is marshalled unless it is a
// string (sent as is) or nil.
func (g *testGateway) do(t testing.TB, method, path string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, g.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// admin sends a request with the master key.
func (g *testGateway) admin(t testing.TB, method, path string, body any) response {
	t.Helper()
	return g.do(t, method, path, body, "Authorization", "Bearer "+testMasterKey)
}

func TestHealth(t *testing.T) {
	g := newTestGateway(t, nil)
	if r := g.do(t, "GET", "/health/liveliness", nil); r.status != 200 {
		t.Errorf("liveliness: got %d, want 200", r.status)
	}
	r := g.do(t, "GET", "/health/readiness", nil)
	if r.status != 200 || r.json(t)["db"] != "connected" {
		t.Errorf("readiness: got %d %s, want 200 with db connected", r.status, r.body)
	}
	if r := g.do(t, "GET", "/health/readiness/details", nil); r.status != 401 {
		t.Errorf("details without a key: got %d, want 401", r.status)
	}
	r = g.admin(t, "GET", "/health/readiness/details", nil)
	if r.status != 200 || r.json(t)["version"] != "dev" {
		t.Errorf("details: got %d %s", r.status, r.body)
	}
	g.db.Close()
	r = g.do(t, "GET", "/health/readiness", nil)
	if r.status != 503 || r.json(t)["db"] != "disconnected" {
		t.Errorf("readiness with the db closed: got %d %s, want 503 disconnected", r.status, r.body)
	}
}

func TestRequestID(t *testing.T) {
	g := newTestGateway(t, nil)
	r := g.do(t, "GET", "/health/liveliness", nil, "X-Request-Id", "abc-123")
	if got := r.header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("given id: got %q, want abc-123", got)
	}
	r = g.do(t, "GET", "/health/liveliness", nil)
	if got := r.header.Get("X-Request-Id"); len(got) != 32 {
		t.Errorf("made id: got %q, want 32 hex characters", got)
	}
	r = g.do(t, "GET", "/health/liveliness", nil, "X-Request-Id", strings.Repeat("x", 500))
	if got := r.header.Get("X-Request-Id"); len(got) != 32 {
		t.Errorf("overlong id: got %q, want a new one", got)
	}
}

func TestAccessLogHasNoSecrets(t *testing.T) {
	g := newTestGateway(t, nil)
	g.admin(t, "GET", "/v1/mcp/server?api_key=sk-query-secret", nil)
	g.do(t, "GET", "/v1/mcp/server", nil, "x-litellm-api-key", "sk-wrong-secret")
	logs := g.logs.String()
	for _, secret := range []string{testMasterKey, "sk-query-secret", "sk-wrong-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"principal":"master_key"`) {
		t.Errorf("access log lines missing:\n%s", logs)
	}
}

func TestPanicRecovery(t *testing.T) {
	g := newTestGateway(t, nil)
	h := g.s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("secret detail")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health/liveliness", nil))
	if rec.Code != 500 {
		t.Fatalf("got %d, want 500", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "secret detail") {
		t.Errorf("panic value leaked: %s", rec.Body)
	}
	var b errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error.Type != "internal_server_error" {
		t.Errorf("body %s, want a JSON internal_server_error", rec.Body)
	}
}

func TestBodyLimit(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"server_name":"x","url":"http://example.com","description":"` + strings.Repeat("a", 2048) + `"}`
	r := g.admin(t, "POST", "/v1/mcp/server", big)
	if r.status != 413 {
		t.Errorf("got %d %s, want 413", r.status, r.body)
	}
	// Chunked, so the length is unknown up front.
	req, _ := http.NewRequest("POST", g.url+"/v1/mcp/server", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+testMasterKey)
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked: got %d, want 413", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	g := newTestGateway(t, nil)
	r := g.do(t, "GET", "/metrics", nil)
	if r.status != 401 || !strings.Contains(r.errorField(t, "message"), "require_auth_for_metrics_endpoint") {
		t.Errorf("without a key: got %d %s, want 401 naming the setting", r.status, r.body)
	}
	g.do(t, "GET", "/health/liveliness", nil)
	r = g.admin(t, "GET", "/metrics", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `toolgate_http_requests_total{method="GET",route="GET /health/liveliness",status="200"} 1`) {
		t.Errorf("with the master key: got %d\n%s", r.status, r.body)
	}

	open := newTestGateway(t, func(c *Config) { c.MetricsPublic = true })
	if r := open.do(t, "GET", "/metrics", nil); r.status != 200 {
		t.Errorf("public metrics: got %d, want 200", r.status)
	}
}

func TestMasterKeyGenerated(t *testing.T) {
	db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := func() (*Server, string) {
		out := &bytes.Buffer{}
		s, err := New(Config{Store: db, MasterKeyOut: out})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, out.String()
	}
	s1, out := start()
	var key string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "sk-") {
			key = f
		}
	}
	if key == "" {
		t.Fatalf("no key printed: %q", out)
	}
	h, err := db.Setting(context.Background(), settingMasterKeyHash)
	if err != nil || h != hashKey(key) {
		t.Fatalf("stored hash %q (%v), want the key's SHA-256", h, err)
	}
	s2, out2 := start()
	if out2 != "" {
		t.Errorf("second start printed %q, want nothing", out2)
	}
	for _, s := range []*Server{s1, s2} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/mcp/server", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("generated key: got %d %s, want 200", rec.Code, rec.Body)
		}
	}
}

var _ store.Store = (*sqlite.DB)(nil)

// TestWrongMethodIsJSON: the catch-all route answers unknown method+path pairs, so even a
// wrong method gets a JSON error rather than ServeMux's plain text.
func TestWrongMethodIsJSON(t *testing.T) {
	g := newTestGateway(t, nil)
	r := g.admin(t, "PATCH", "/v1/mcp/server", "{}")
	if r.status != 404 || r.errorField(t, "code") != "404" || !strings.Contains(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("got %d %q %s, want a JSON 404", r.status, r.header.Get("Content-Type"), r.body)
	}
}
