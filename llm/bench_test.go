package llm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	h := benchGateway(b, up.URL, true)
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
// on), for a caller whose key has a budget and one with no budget in its chain, and
// through a bare reverse proxy; with TOOLGATE_TEST_DATABASE_URL set, also the budgeted key
// on Postgres (a local server, sharing the cores). Rates are
// measured in alternating short rounds, so that a busy neighbour weighs on all alike. It
// runs only with TOOLGATE_LLM_LOAD=1 (it takes tens of seconds and wants an idle machine).
// The whole gateway (key lookup, access log) is measured by gateway's TestLLMLoad.
func TestLoad(t *testing.T) {
	if os.Getenv("TOOLGATE_LLM_LOAD") == "" {
		t.Skip("set TOOLGATE_LLM_LOAD=1 to run the load test")
	}
	up := benchProvider(t)
	c := benchClient()
	names := []string{"direct", "budget", "no budget", "bare reverse proxy"}
	targets := []string{up.URL + "/chat/completions",
		benchGateway(t, up.URL, true).http.URL + "/v1/chat/completions",
		benchGateway(t, up.URL, false).http.URL + "/v1/chat/completions",
		reverseProxy(t, up.URL) + "/chat/completions"}
	if pg := newPostgres(t); pg != nil {
		names = append(names, "budget on Postgres")
		targets = append(targets, benchGatewayOn(t, pg, up.URL, true).http.URL+"/v1/chat/completions")
	}
	lat := make([][]time.Duration, len(targets))
	for range 2 { // the second round wins: warm pools
		for i, u := range targets {
			var ds []time.Duration
			for range 3000 {
				s := time.Now()
				postOnce(t, c, u)
				ds = append(ds, time.Since(s))
			}
			lat[i] = ds
		}
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(float64(len(s)-1)*p)]
	}
	d50, d99 := pct(lat[0], .5), pct(lat[0], .99)
	t.Logf("1 client: direct p50 %v p99 %v", d50, d99)
	for i := 1; i < len(targets); i++ {
		g50, g99 := pct(lat[i], .5), pct(lat[i], .99)
		t.Logf("1 client, %s: p50 %v p99 %v; added p50 %v p99 %v", names[i], g50, g99, g50-d50, g99-d99)
	}
	rates := func(clients int, do func(url string) error, urls []string) []float64 {
		out := make([]float64, len(urls))
		const rounds, round = 6, 500 * time.Millisecond
		for range rounds {
			for i, u := range urls {
				var count atomic.Int64
				var wg sync.WaitGroup
				stop := time.Now().Add(round)
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(stop) {
							if err := do(u); err != nil {
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
	post := func(body []byte) func(string) error {
		return func(u string) error {
			resp, err := c.Post(u, "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s: status %d", u, resp.StatusCode)
			}
			return nil
		}
	}
	report := func(what, unit string, r []float64) {
		line := fmt.Sprintf("%s: direct %.0f %s", what, r[0], unit)
		for i := 1; i < len(r); i++ {
			line += fmt.Sprintf("; %s %.0f %s (%.0f%%)", names[i], r[i], unit, 100*r[i]/r[0])
		}
		t.Log(line)
	}
	for _, n := range []int{16, 64} {
		report(fmt.Sprintf("%d clients", n), "req/s", rates(n, post(benchBody), targets))
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
	streamBody := bytes.Replace(benchBody, []byte(`"max_tokens":64`), []byte(`"max_tokens":64,"stream":true`), 1)
	stargets := []string{sp.URL + "/chat/completions",
		benchGateway(t, sp.URL, true).http.URL + "/v1/chat/completions",
		benchGateway(t, sp.URL, false).http.URL + "/v1/chat/completions",
		reverseProxy(t, sp.URL) + "/chat/completions"}
	report("streaming, 16 clients", "streams/s", rates(16, post(streamBody), stargets))
}

// reverseProxy is the floor the issue compares against: httputil.ReverseProxy with the
// same upstream connection pool as the gateway and nothing else (no parsing, no budget,
// no logs). It returns the proxy's base URL.
func reverseProxy(tb testing.TB, upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = benchClient().Transport
	rp.FlushInterval = -1
	srv := httptest.NewServer(rp)
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
