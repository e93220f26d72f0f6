package llm_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/llm/budget/budgettest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
)

const benchAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there, this is a short answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`

var benchBody = []byte(`{"model":"gpt","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words please."}],"max_tokens":64,"temperature":0.2}`)

// benchProvider is a minimal OpenAI-compatible upstream.
func benchProvider(tb testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchAnswer)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// benchGateway is the llm handler with budgets, rate limits and the spend log on.
func benchGateway(tb testing.TB, upstream string) *harness {
	h := newHarness(tb, harnessOpts{models: []llm.ModelConfig{model("gpt", upstream, map[string]any{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})}})
	max := 1e12
	h.st.SetLimit(store.BudgetRef{Scope: store.BudgetKey, ID: "key1"}, &max, nil, "", nil)
	h.caller.Limits = []budget.Rule{{Scope: store.BudgetKey, ID: "key1", RPM: 1 << 40, MaxParallel: 1 << 20}}
	return h
}

func benchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 512
	return &http.Client{Transport: t}
}

func postOnce(tb testing.TB, c *http.Client, url string) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(benchBody))
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkCompletion compares a non-streaming completion sent directly to the fake
// provider with the same one through the llm handler. Compare ns/op of the two.
func BenchmarkCompletion(b *testing.B) {
	up := benchProvider(b)
	h := benchGateway(b, up.URL)
	c := benchClient()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			postOnce(b, c, up.URL+"/chat/completions")
		}
	})
	b.Run("gateway", func(b *testing.B) {
		for b.Loop() {
			postOnce(b, c, h.http.URL+"/v1/chat/completions")
		}
	})
	b.Run("direct-parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				postOnce(b, c, up.URL+"/chat/completions")
			}
		})
	})
	b.Run("gateway-parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				postOnce(b, c, h.http.URL+"/v1/chat/completions")
			}
		})
	})
}

// BenchmarkReservePostgres measures one reservation and its settlement on Postgres, with
// the server's synchronous_commit and with synchronous_commit=off for the gateway's
// connections (a crash may then lose the last few hundred milliseconds of spend).
func BenchmarkReservePostgres(b *testing.B) {
	if newPostgres(b) == nil {
		b.Skip("TOOLGATE_TEST_DATABASE_URL not set")
	}
	b.Run("sync", func(b *testing.B) { benchReserve(b, newPostgres(b)) })
	b.Run("async-commit", func(b *testing.B) { benchReserve(b, newPostgres(b, "synchronous_commit", "off")) })
}

func benchReserve(b *testing.B, pg *postgres.DB) {
	m, err := budget.New(budget.Config{Store: pg})
	if err != nil {
		b.Fatal(err)
	}
	max := 1e12
	ref := store.BudgetRef{Scope: store.BudgetKey, ID: "bench"}
	if err := pg.UpsertBudgetLimits(context.Background(), &store.Budget{BudgetRef: ref, MaxBudget: &max}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("reserve", func(b *testing.B) {
		for b.Loop() {
			r, err := m.Reserve(ctx, []store.BudgetRef{ref}, 0.01)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = r.Commit(ctx, 0.01)
			b.StartTimer()
		}
	})
	b.Run("reserve-commit-16-clients", func(b *testing.B) {
		b.SetParallelism(8) // 8 x GOMAXPROCS goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := m.Reserve(ctx, []store.BudgetRef{ref}, 0.01)
				if err != nil {
					b.Fatal(err)
				}
				_ = r.Commit(ctx, 0.01)
			}
		})
	})
}

// TestLoad is the load run behind the README numbers: latency with one client and
// throughput with 16 and 64, direct vs through the llm handler. It runs only with
// TOOLGATE_LLM_LOAD=1 (it takes tens of seconds and wants an idle machine).
func TestLoad(t *testing.T) {
	if os.Getenv("TOOLGATE_LLM_LOAD") == "" {
		t.Skip("set TOOLGATE_LLM_LOAD=1 to run the load test")
	}
	up := benchProvider(t)
	h := benchGateway(t, up.URL)
	c := benchClient()
	targets := map[string]string{"direct": up.URL + "/chat/completions", "gateway": h.http.URL + "/v1/chat/completions"}
	lat := map[string][]time.Duration{}
	for _, name := range []string{"direct", "gateway", "direct", "gateway"} {
		var ds []time.Duration
		for range 3000 {
			s := time.Now()
			postOnce(t, c, targets[name])
			ds = append(ds, time.Since(s))
		}
		lat[name] = ds // the second round wins: warm pools
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(float64(len(s)-1)*p)]
	}
	t.Logf("1 client: direct p50 %v p99 %v; gateway p50 %v p99 %v; added p50 %v p99 %v",
		pct(lat["direct"], .5), pct(lat["direct"], .99), pct(lat["gateway"], .5), pct(lat["gateway"], .99),
		pct(lat["gateway"], .5)-pct(lat["direct"], .5), pct(lat["gateway"], .99)-pct(lat["direct"], .99))
	for _, n := range []int{16, 64} {
		rps := map[string]float64{}
		for _, name := range []string{"direct", "gateway"} {
			var count atomic.Int64
			var wg sync.WaitGroup
			stop := time.Now().Add(3 * time.Second)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						postOnce(t, c, targets[name])
						count.Add(1)
					}
				}()
			}
			wg.Wait()
			rps[name] = float64(count.Load()) / 3
		}
		t.Logf("%d clients: direct %.0f req/s, gateway %.0f req/s (%.0f%%)", n, rps["direct"], rps["gateway"], 100*rps["gateway"]/rps["direct"])
	}
	// Streaming: 10 chunks per answer, 16 clients.
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
	hs := benchGateway(t, sp.URL)
	streamBody := bytes.Replace(benchBody, []byte(`"max_tokens":64`), []byte(`"max_tokens":64,"stream":true`), 1)
	stargets := map[string]string{"direct": sp.URL + "/chat/completions", "gateway": hs.http.URL + "/v1/chat/completions"}
	srps := map[string]float64{}
	for _, name := range []string{"direct", "gateway"} {
		var count atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(3 * time.Second)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					resp, err := c.Post(stargets[name], "application/json", bytes.NewReader(streamBody))
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					count.Add(1)
				}
			}()
		}
		wg.Wait()
		srps[name] = float64(count.Load()) / 3
	}
	t.Logf("streaming, 16 clients: direct %.0f streams/s, gateway %.0f streams/s (%.0f%%)", srps["direct"], srps["gateway"], 100*srps["gateway"]/srps["direct"])
}

// rtFunc is an in-memory provider: no network, so BenchmarkHandler measures the
// handler's own work (parse, hygiene, limits, reservation, routing, spend log).
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func budgettestStore() *budgettest.Store { return budgettest.New() }

func BenchmarkHandler(b *testing.B) {
	st := budgettestStore()
	m, _ := budget.New(budget.Config{Store: st})
	sl, _ := budget.NewSpendLog(budget.SpendLogConfig{Store: st})
	defer sl.Close(context.Background())
	client := &http.Client{Transport: rtFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader([]byte(benchAnswer))), Request: r}, nil
	})}
	srv, err := llm.New(llm.Config{Models: []llm.ModelConfig{model("gpt", "http://provider.invalid", nil)}, Budget: m, SpendLog: sl, HTTPClient: client})
	if err != nil {
		b.Fatal(err)
	}
	c := &llm.Caller{KeyID: "k", Budgets: []store.BudgetRef{{Scope: store.BudgetKey, ID: "k"}},
		Limits: []budget.Rule{{Scope: store.BudgetKey, ID: "k", RPM: 1 << 40}}}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(benchBody))
		req = req.WithContext(llm.WithCaller(req.Context(), c))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
