package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/internal/loadtest"
	"github.com/toolgate/toolgate/internal/logbuf"
)

// TestLLMLoad is the whole-gateway load run behind the README's performance table: the
// same non-streaming completion sent to a local fake provider directly and through the
// gateway (SQLite store, key lookup, access log, rate limits, budgets, spend log), with a
// virtual key that has a budget and one with no budget anywhere in its chain, and through
// a bare reverse proxy. Throughput is reported as a ratio to direct in the same run. It runs only with TOOLGATE_LLM_LOAD=1
// (it takes about a minute and wants an idle machine):
//
//	TOOLGATE_LLM_LOAD=1 go test -run TestLLMLoad -v ./gateway/
func TestLLMLoad(t *testing.T) {
	if os.Getenv("TOOLGATE_LLM_LOAD") == "" {
		t.Skip("set TOOLGATE_LLM_LOAD=1 to run the load test")
	}
	up := httptest.NewServer(loadtest.Provider())
	defer up.Close()
	sp := httptest.NewServer(loadtest.StreamingProvider())
	defer sp.Close()
	price := map[string]any{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := logbuf.New(logFile, 0, 0) // the binary's default buffering
	defer logs.Close()
	g := newTestGateway(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) // request log on, at Info, as the binary writes it
		c.ModelList = []map[string]any{
			{"model_name": "gpt", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-up"}, "model_info": price},
			{"model_name": "gpt-stream", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": sp.URL, "api_key": "sk-up"}, "model_info": price},
		}
	})
	t.Cleanup(func() { g.s.llmClose() })
	budgeted := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "budgeted", "max_budget": 1e9, "rpm_limit": 1 << 30}), 200)["key"].(string)
	free := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "free"}), 200)["key"].(string)

	auth := func(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }
	// The bare reverse proxy is the floor the targets were set from, measured in the same run.
	targets := []loadtest.Target{
		{Name: "direct", URL: up.URL + "/chat/completions"},
		{Name: "budget key", URL: g.url + "/v1/chat/completions", Header: auth(budgeted)},
		{Name: "no-budget key", URL: g.url + "/v1/chat/completions", Header: auth(free)},
		{Name: "bare reverse proxy", URL: loadtest.ReverseProxy(t, up.URL) + "/chat/completions"},
	}
	stream := []loadtest.Target{{Name: "direct", URL: sp.URL + "/chat/completions"}, targets[1], targets[2],
		{Name: "bare reverse proxy", URL: loadtest.ReverseProxy(t, sp.URL) + "/chat/completions"}}
	streamBody := bytes.Replace(loadtest.Body, []byte(`"model":"gpt"`), []byte(`"model":"gpt-stream","stream":true`), 1)
	loadtest.Run(t, loadtest.Body, targets, streamBody, stream)
}

// BenchmarkLLMCompletion measures the gateway's own work for one non-streaming completion
// (admission, key lookup, limits, budget, routing, the provider call to a local fake,
// spend log), called in process, with a key that has a budget and one that has none.
func BenchmarkLLMCompletion(b *testing.B) {
	up := httptest.NewServer(loadtest.Provider())
	defer up.Close()
	g := newTestGateway(b, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		c.ModelList = []map[string]any{{"model_name": "gpt", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-up"},
			"model_info": map[string]any{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}}
	})
	b.Cleanup(func() { g.s.llmClose() })
	keys := map[string]string{
		"budget key":    must(b, g.admin(b, "POST", "/key/generate", map[string]any{"max_budget": 1e9}), 200)["key"].(string),
		"no-budget key": must(b, g.admin(b, "POST", "/key/generate", map[string]any{}), 200)["key"].(string),
	}
	h := g.s.Handler()
	for _, name := range []string{"budget key", "no-budget key"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(loadtest.Body))
				req.Header.Set("Authorization", "Bearer "+keys[name])
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
