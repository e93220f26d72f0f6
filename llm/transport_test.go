package llm_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/internal/loadtest"
	"github.com/toolgate/toolgate/llm"
)

// TestProxyFromEnvironment: with HTTP_PROXY set, calls to a provider that is not exempt
// (NO_PROXY, loopback) go through the proxy: the fast client, which knows no proxies, is
// only used for providers reached directly.
func TestProxyFromEnvironment(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host != "provider.invalid" || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusBadGateway)
			return
		}
		proxied.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, loadtest.Answer)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", "http://provider.invalid/v1", nil)}})
	resp, body := h.post("/v1/chat/completions", chat("gpt"))
	if resp.StatusCode != 200 || proxied.Load() != 1 {
		t.Fatalf("through HTTP_PROXY: %d %s; proxy saw %d calls, want 1", resp.StatusCode, body, proxied.Load())
	}

	// A provider on loopback is reached directly even with HTTP_PROXY set, as net/http does.
	up := newFakeOpenAI(t)
	h = newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 || up.calls.Load() != 1 || proxied.Load() != 1 {
		t.Errorf("loopback provider: %d %s; provider %d calls, proxy %d", resp.StatusCode, body, up.calls.Load(), proxied.Load())
	}
}

// TestProviderRetryAfterHonoured: a provider's 429 with Retry-After makes the retry on the
// same deployment wait that long, whichever client carried the call, and a model with one
// deployment is retried rather than cooled down.
func TestProviderRetryAfterHonoured(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
			return
		}
		_, _ = io.WriteString(w, loadtest.Answer)
	}))
	defer up.Close()
	one := 1
	// The only deployment of its model is not cooled down by a 429, so the retry can use it.
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)},
		router: llm.RouterSettings{NumRetries: &one, RetryAfter: 0.001}})
	start := time.Now()
	resp, body := h.post("/v1/chat/completions", chat("gpt"))
	if resp.StatusCode != 200 || calls.Load() != 2 {
		t.Fatalf("status %d after %d calls: %s", resp.StatusCode, calls.Load(), body)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("retried after %v; the provider asked for 1s", waited)
	}
}

// TestProviderClosesIdleConnections: providers close idle keep-alive connections after a
// few seconds (uvicorn, behind vLLM, after 5); a call after that must not fail on the
// closed connection, even with no router retries.
func TestProviderClosesIdleConnections(t *testing.T) {
	up := httptest.NewUnstartedServer(loadtest.Provider())
	up.Config.IdleTimeout = 20 * time.Millisecond
	up.Start()
	defer up.Close()
	zero := 0
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}, router: llm.RouterSettings{NumRetries: &zero}})
	for i := range 5 {
		if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
			t.Fatalf("call %d after the provider closed the idle connection: %d %s", i, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A burst after an idle spell meets many closed connections at once.
	for round := range 3 {
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("%d %s", resp.StatusCode, body)
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("round %d: %d of 16 concurrent calls failed after the provider closed idle connections", round, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLargeAndChunkedAnswers: long answers, sent with a length or chunked, arrive whole
// and their usage is read.
func TestLargeAndChunkedAnswers(t *testing.T) {
	long := strings.Repeat("word ", 60000) // 300 KB of content
	answer := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + long + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":60000,"total_tokens":60003}}`
	for _, chunked := range []bool{false, true} {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			if !chunked {
				w.Header().Set("Content-Length", fmt.Sprint(len(answer)))
			}
			for i := 0; i < len(answer); i += 7000 { // several writes: chunks when no length is set
				_, _ = io.WriteString(w, answer[i:min(i+7000, len(answer))])
				w.(http.Flusher).Flush()
			}
		}))
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
		resp, body := h.post("/v1/chat/completions", chat("gpt"))
		up.Close()
		if resp.StatusCode != 200 || string(body) != answer {
			t.Fatalf("chunked %v: status %d, %d bytes, want the %d-byte answer", chunked, resp.StatusCode, len(body), len(answer))
		}
		h.flush()
		if l := h.logs(); len(l) != 1 || l[0].CompletionTokens != 60000 {
			t.Errorf("chunked %v: spend log %+v, want 60000 completion tokens", chunked, l)
		}
	}
}
