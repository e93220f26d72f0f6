package llm_test

import (
	"bytes"
	"context"
	"errors"
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

// BenchmarkAdmissions measures how many admissions per second one key sustains through
// the budget core: each of 16 or 64 clients reserves, then commits, over and over, as the
// gateway does per request. The baseline is SQLite (in-process, one writer) in the same
// run; each Postgres case also reports admissions/s as a ratio to it ("x-sqlite"). Postgres
// runs with the server's synchronous commit ("sync", the default) and with
// toolgate_budget_commit=async. Run with TOOLGATE_TEST_DATABASE_URL set:
//
//	go test -run '^$' -bench Admissions -benchtime 3s ./llm
func BenchmarkAdmissions(b *testing.B) {
	stores := []struct {
		name string
		open func(testing.TB) budget.Store
	}{
		{"sqlite", func(tb testing.TB) budget.Store { return newSQLite(tb) }},
		{"postgres-sync", func(tb testing.TB) budget.Store { return orSkip(tb, newPostgres(tb)) }},
		{"postgres-async", func(tb testing.TB) budget.Store {
			return orSkip(tb, newPostgres(tb, postgres.BudgetCommitParam, "async"))
		}},
	}
	for _, clients := range []int{16, 64} {
		var baseline float64
		for _, st := range stores {
			b.Run(fmt.Sprintf("%s/clients=%d", st.name, clients), func(b *testing.B) {
				rate := benchAdmissions(b, st.open(b), clients)
				b.ReportMetric(rate, "admissions/s")
				if st.name == "sqlite" {
					baseline = rate
				} else if baseline > 0 {
					b.ReportMetric(rate/baseline, "x-sqlite")
				}
			})
		}
	}
}

// orSkip skips the benchmark when Postgres is not configured.
func orSkip(tb testing.TB, db *postgres.DB) budget.Store {
	if db == nil {
		tb.Skip("TOOLGATE_TEST_DATABASE_URL not set")
	}
	return db
}

// benchAdmissions runs b.N admissions (reserve, then commit) from clients goroutines
// against one key whose budget fits exactly b.N of them, checks that all were admitted,
// that the spend matches and that one more is refused, and returns admissions per second.
func benchAdmissions(b *testing.B, st budget.Store, clients int) float64 {
	m, err := budget.New(budget.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ref := store.BudgetRef{Scope: store.BudgetKey, ID: "bench"}
	limit := float64(b.N) // each admission reserves 1 and spends 1
	type limiter interface {
		UpsertBudgetLimits(context.Context, *store.Budget) error
		Budget(context.Context, store.BudgetRef) (*store.Budget, error)
	}
	ls := st.(limiter)
	if err := ls.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: ref, MaxBudget: &limit}); err != nil {
		b.Fatal(err)
	}
	var next, admitted atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				r, err := m.Reserve(ctx, []store.BudgetRef{ref}, 1)
				if err != nil {
					b.Error(err)
					return
				}
				admitted.Add(1)
				if err := r.Commit(ctx, 1); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	bud, err := ls.Budget(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	if got := admitted.Load(); got != int64(b.N) || bud.Spend != float64(got) || bud.Reserved != 0 {
		b.Fatalf("admitted %d of %d; spend %v reserved %v", got, b.N, bud.Spend, bud.Reserved)
	}
	var ee *budget.ExceededError
	if _, err := m.Reserve(ctx, []store.BudgetRef{ref}, 1); !errors.As(err, &ee) {
		b.Fatalf("reserve over a spent budget: %v, want ExceededError", err)
	}
	return float64(b.N) / elapsed.Seconds()
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
