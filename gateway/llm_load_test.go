package gateway

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const loadAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there, this is a short answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`

var loadBody = []byte(`{"model":"gpt","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words please."}],"max_tokens":64,"temperature":0.2}`)

// TestLLMLoad is the whole-gateway load run behind the README's performance table: the
// same non-streaming completion sent to a local fake provider directly and through the
// gateway (SQLite store, key lookup, access log, rate limits, budgets, spend log), with a
// virtual key that has a budget and one with no budget anywhere in its chain. Throughput
// is reported as a ratio to direct in the same run. It runs only with TOOLGATE_LLM_LOAD=1
// (it takes about a minute and wants an idle machine):
//
//	TOOLGATE_LLM_LOAD=1 go test -run TestLLMLoad -v ./gateway/
func TestLLMLoad(t *testing.T) {
	if os.Getenv("TOOLGATE_LLM_LOAD") == "" {
		t.Skip("set TOOLGATE_LLM_LOAD=1 to run the load test")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, loadAnswer)
	}))
	defer up.Close()
	sp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 10 {
			fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word%d \"},\"finish_reason\":null}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer sp.Close()
	price := map[string]any{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
	g := newTestGateway(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) // request log on, at Info
		c.ModelList = []map[string]any{
			{"model_name": "gpt", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-up"}, "model_info": price},
			{"model_name": "gpt-stream", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": sp.URL, "api_key": "sk-up"}, "model_info": price},
		}
	})
	t.Cleanup(func() { g.s.llmClose() })
	budgeted := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "budgeted", "max_budget": 1e9, "rpm_limit": 1 << 30}), 200)["key"].(string)
	free := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "free"}), 200)["key"].(string)

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	post := func(url, key string, body []byte) error {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: status %d", url, resp.StatusCode)
		}
		return nil
	}
	type target struct{ name, url, key string }
	targets := []target{
		{"direct", up.URL + "/chat/completions", ""},
		{"budget key", g.url + "/v1/chat/completions", budgeted},
		{"no-budget key", g.url + "/v1/chat/completions", free},
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(float64(len(s)-1)*p)]
	}
	lat := map[string][]time.Duration{}
	for range 2 { // the second round wins: warm pools and caches
		for _, tg := range targets {
			var ds []time.Duration
			for range 3000 {
				s := time.Now()
				if err := post(tg.url, tg.key, loadBody); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, time.Since(s))
			}
			lat[tg.name] = ds
		}
	}
	d50, d99 := pct(lat["direct"], .5), pct(lat["direct"], .99)
	t.Logf("1 client: direct p50 %v p99 %v", d50, d99)
	for _, tg := range targets[1:] {
		g50, g99 := pct(lat[tg.name], .5), pct(lat[tg.name], .99)
		t.Logf("1 client, %s: p50 %v p99 %v; added p50 %v p99 %v", tg.name, g50, g99, g50-d50, g99-d99)
	}
	// rates measures req/s of each target with clients concurrent clients, alternating
	// between the targets in short rounds so that a busy neighbour on the machine weighs on
	// all of them alike.
	rates := func(clients int, body []byte, tgs ...target) []float64 {
		out := make([]float64, len(tgs))
		const rounds, round = 6, 500 * time.Millisecond
		for range rounds {
			for i, tg := range tgs {
				var count atomic.Int64
				var wg sync.WaitGroup
				stop := time.Now().Add(round)
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(stop) {
							if err := post(tg.url, tg.key, body); err != nil {
								t.Error(err)
								return
							}
							count.Add(1)
						}
					}()
				}
				wg.Wait()
				out[i] += float64(count.Load()) / (rounds * round.Seconds())
			}
		}
		return out
	}
	for _, n := range []int{16, 64} {
		r := rates(n, loadBody, targets...)
		line := fmt.Sprintf("%d clients: direct %.0f req/s", n, r[0])
		for i, tg := range targets[1:] {
			line += fmt.Sprintf("; %s %.0f req/s (%.0f%%)", tg.name, r[i+1], 100*r[i+1]/r[0])
		}
		t.Log(line)
	}
	streamBody := bytes.Replace(loadBody, []byte(`"model":"gpt"`), []byte(`"model":"gpt-stream","stream":true`), 1)
	r := rates(16, streamBody, target{"direct", sp.URL + "/chat/completions", ""}, targets[1], targets[2])
	line := fmt.Sprintf("streaming, 16 clients: direct %.0f streams/s", r[0])
	for i, tg := range targets[1:] {
		line += fmt.Sprintf("; %s %.0f streams/s (%.0f%%)", tg.name, r[i+1], 100*r[i+1]/r[0])
	}
	t.Log(line)
}

// BenchmarkLLMCompletion measures the gateway's own work for one non-streaming completion
// (admission, key lookup, limits, budget, routing, the provider call to a local fake,
// spend log), called in process, with a key that has a budget and one that has none.
func BenchmarkLLMCompletion(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, loadAnswer)
	}))
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
				req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(loadBody))
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
