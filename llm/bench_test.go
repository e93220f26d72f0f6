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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/internal/loadtest"
	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/llm/budget/budgettest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
)

// benchProvider is a minimal OpenAI-compatible upstream.
func benchProvider(tb testing.TB) *httptest.Server {
	srv := httptest.NewServer(loadtest.Provider())
	tb.Cleanup(srv.Close)
	return srv
}

// benchGateway is the llm handler with the gateway's default store (SQLite, in a file),
// its default budget leases (1 s) and its default spend log (batches of 256 rows, at most
// 1 s apart). With limited, the caller's key has a max budget and rate limits;
// without, no budget in the caller's chain has a limit (spend is still recorded).
func benchGateway(tb testing.TB, upstream string, limited bool) *harness {
	return benchGatewayOn(tb, newSQLite(tb), upstream, limited)
}

// benchStore is what benchGatewayOn needs of a store.
type benchStore interface {
	budget.Store
	budget.SpendStore
	llm.SpendReader
	UpsertBudgetLimits(context.Context, *store.Budget) error
}

// benchGatewayOn is benchGateway on the given store.
func benchGatewayOn(tb testing.TB, db benchStore, upstream string, limited bool) *harness {
	h := newHarness(tb, harnessOpts{models: []llm.ModelConfig{model("gpt", upstream, map[string]any{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})},
		budgets: db, spendStore: db, reader: db, leaseFor: time.Second, spendEvery: time.Second})
	if limited {
		max := 1e12
		if err := db.UpsertBudgetLimits(context.Background(), &store.Budget{BudgetRef: store.BudgetRef{Scope: store.BudgetKey, ID: "key1"}, MaxBudget: &max}); err != nil {
			tb.Fatal(err)
		}
		h.caller.Limits = []budget.Rule{{Scope: store.BudgetKey, ID: "key1", RPM: 1 << 40, MaxParallel: 1 << 20}}
	}
	return h
}

func postOnce(tb testing.TB, c *http.Client, url string) {
	if err := loadtest.Post(c, loadtest.Target{Name: url, URL: url}, loadtest.Body); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkCompletion compares a non-streaming completion sent directly to the fake
// provider with the same one through the llm handler. Compare ns/op of the two.
func BenchmarkCompletion(b *testing.B) {
	up := benchProvider(b)
	h := benchGateway(b, up.URL, true)
	c := loadtest.Client()
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
// gateway does per request. "calls" reserves and settles every call in the store
// (proxy_batch_write_at: 0); "leases" is the gateway's default (1 s leases). The baseline
// is SQLite with every call in the store, in the same run; every other case also reports
// admissions/s as a ratio to it ("x-sqlite"). Postgres runs with the server's synchronous
// commit ("sync", the default) and with toolgate_budget_commit=async. Run with
// TOOLGATE_TEST_DATABASE_URL set:
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
		for _, lease := range []time.Duration{0, time.Second} {
			mode := "calls"
			if lease > 0 {
				mode = "leases"
			}
			for _, st := range stores {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", st.name, mode, clients), func(b *testing.B) {
					rate := benchAdmissions(b, st.open(b), clients, lease)
					b.ReportMetric(rate, "admissions/s")
					if st.name == "sqlite" && lease == 0 {
						baseline = rate
					} else if baseline > 0 {
						b.ReportMetric(rate/baseline, "x-sqlite")
					}
				})
			}
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
func benchAdmissions(b *testing.B, st budget.Store, clients int, lease time.Duration) float64 {
	m, err := budget.New(budget.Config{Store: st, LeaseFor: lease})
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
	if err := m.Flush(ctx); err != nil { // leases: spend reaches the store
		b.Fatal(err)
	}
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
// throughput with 16 and 64, direct vs through the llm handler (SQLite store, spend log
// on), for a caller whose key has a budget and one with no budget in its chain, through a
// bare reverse proxy, and through a forwarder that does nothing but the one provider call; with TOOLGATE_TEST_DATABASE_URL set, also the budgeted key
// on Postgres (a local server, sharing the cores). Rates are
// measured in alternating short rounds, so that a busy neighbour weighs on all alike. It
// runs only with TOOLGATE_LLM_LOAD=1 (it takes tens of seconds and wants an idle machine).
// The whole gateway (key lookup, access log) is measured by gateway's TestLLMLoad.
func TestLoad(t *testing.T) {
	if os.Getenv("TOOLGATE_LLM_LOAD") == "" {
		t.Skip("set TOOLGATE_LLM_LOAD=1 to run the load test")
	}
	targets := func(upstream string) []loadtest.Target {
		return []loadtest.Target{{Name: "direct", URL: upstream + "/chat/completions"},
			{Name: "budget", URL: benchGateway(t, upstream, true).http.URL + "/v1/chat/completions"},
			{Name: "no budget", URL: benchGateway(t, upstream, false).http.URL + "/v1/chat/completions"},
			{Name: "bare reverse proxy", URL: loadtest.ReverseProxy(t, upstream) + "/chat/completions"},
			{Name: "forwarder", URL: forwarder(t, upstream) + "/chat/completions"}}
	}
	up := benchProvider(t).URL
	ts := targets(up)
	if pg := newPostgres(t); pg != nil {
		ts = append(ts, loadtest.Target{Name: "budget on Postgres", URL: benchGatewayOn(t, pg, up, true).http.URL + "/v1/chat/completions"})
	}
	sp := httptest.NewServer(loadtest.StreamingProvider())
	defer sp.Close()
	streamBody := bytes.Replace(loadtest.Body, []byte(`"max_tokens":64`), []byte(`"max_tokens":64,"stream":true`), 1)
	loadtest.Run(t, loadtest.Body, ts, streamBody, targets(sp.URL))
}

// forwarder is the ceiling for any gateway on net/http: it reads the body, makes one call
// to the provider with the same connection pool as the gateway, and writes the answer back,
// with nothing else (no parsing, no budget, no logs, none of ReverseProxy's header work). It
// returns the forwarder's base URL.
func forwarder(tb testing.TB, upstream string) string {
	c := loadtest.Client()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, upstream+r.URL.Path, bytes.NewReader(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				w.(http.Flusher).Flush() // chunk by chunk, for streams
			}
			if err != nil {
				return
			}
		}
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
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
			Body: io.NopCloser(bytes.NewReader([]byte(loadtest.Answer))), Request: r}, nil
	})}
	srv, err := llm.New(llm.Config{Models: []llm.ModelConfig{model("gpt", "http://provider.invalid", nil)}, Budget: m, SpendLog: sl, HTTPClient: client})
	if err != nil {
		b.Fatal(err)
	}
	c := &llm.Caller{KeyID: "k", Budgets: []store.BudgetRef{{Scope: store.BudgetKey, ID: "k"}},
		Limits: []budget.Rule{{Scope: store.BudgetKey, ID: "k", RPM: 1 << 40}}}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(loadtest.Body))
		req = req.WithContext(llm.WithCaller(req.Context(), c))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
