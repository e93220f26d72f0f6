package llm_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/llm/budget/budgettest"
	"github.com/toolgate/toolgate/store"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// harness is an llm.Server with budgets, a spend log and a caller injected per request.
type harness struct {
	t      testing.TB
	srv    *llm.Server
	http   *httptest.Server
	st     *budgettest.Store
	spend  *budget.SpendLog
	caller *llm.Caller

	setLimitFn func(h *harness, max float64)
	countFn    func(h *harness) int
}

type harnessOpts struct {
	models     []llm.ModelConfig
	router     llm.RouterSettings
	modelStore store.ModelStore
	budgets    budget.Store
	spendStore budget.SpendStore
	reader     llm.SpendReader
	setLimit   func(h *harness, max float64) // sets key1's max budget; default: the in-memory store
	count      func(h *harness) int          // counts spend logs; default: the in-memory store
	leaseFor   time.Duration                 // budget leases; default: off
	spendEvery time.Duration                 // spend log interval; default: 5 ms
	tracer     trace.TracerProvider          // traces provider calls; a caller's traceparent is continued
	logger     *slog.Logger
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, st: budgettest.New(), setLimitFn: o.setLimit, countFn: o.count}
	if h.setLimitFn == nil {
		h.setLimitFn = func(h *harness, max float64) {
			h.st.SetLimit(store.BudgetRef{Scope: store.BudgetKey, ID: "key1"}, &max, nil, "", nil)
		}
	}
	if h.countFn == nil {
		h.countFn = func(h *harness) int { return len(h.logs()) }
	}
	bst, sst, rd := budget.Store(h.st), budget.SpendStore(h.st), llm.SpendReader(h.st)
	if o.budgets != nil {
		bst = o.budgets
	}
	if o.spendStore != nil {
		sst = o.spendStore
	}
	if o.reader != nil {
		rd = o.reader
	}
	m, err := budget.New(budget.Config{Store: bst, LeaseFor: o.leaseFor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	h.spend, err = budget.NewSpendLog(budget.SpendLogConfig{Store: sst, Interval: cmp.Or(o.spendEvery, 5*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := llm.Config{Models: o.models, Router: o.router, Budget: m, SpendLog: h.spend, SpendReader: rd, TracerProvider: o.tracer, Logger: o.logger}
	if o.modelStore != nil {
		cfg.ModelStore = o.modelStore
		cfg.Sealer = testSealer(t)
	}
	h.srv, err = llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.caller = &llm.Caller{KeyID: "key1", KeyHash: "hash1", UserID: "user1", TeamID: "team1",
		Budgets: []store.BudgetRef{{Scope: store.BudgetKey, ID: "key1"}, {Scope: store.BudgetTeam, ID: "team1"}}}
	h.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := *h.caller
		if r.Header.Get("x-test-admin") == "1" {
			c.Admin = true
		}
		ctx := r.Context()
		if o.tracer != nil { // as the gateway's server span would be
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		h.srv.ServeHTTP(w, r.WithContext(llm.WithCaller(ctx, &c)))
	}))
	t.Cleanup(func() {
		h.http.Close()
		h.srv.Close()
		h.spend.Close(context.Background())
		m.Close()
	})
	return h
}

// flush waits until queued spend logs are written.
func (h *harness) flush() {
	h.t.Helper()
	time.Sleep(30 * time.Millisecond)
}

func (h *harness) post(path string, body any, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req, _ := http.NewRequest(http.MethodPost, h.http.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func (h *harness) get(path string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	return h.send(http.MethodGet, path, hdr...)
}

// send sends a request without a body.
func (h *harness) send(method, path string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.http.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func (h *harness) budget(scope store.BudgetScope, id string) *store.Budget {
	h.t.Helper()
	b, err := h.st.Budget(context.Background(), store.BudgetRef{Scope: scope, ID: id})
	if err != nil {
		return &store.Budget{}
	}
	return b
}

func (h *harness) logs() []*store.SpendLog {
	h.t.Helper()
	l, err := h.st.SpendLogs(context.Background(), store.SpendFilter{Limit: 1 << 20})
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// model returns a model_list entry for an OpenAI-compatible fake with exact prices.
func model(name, base string, info map[string]any) llm.ModelConfig {
	mi := map[string]any{"input_cost_per_token": 0.5, "output_cost_per_token": 0.125, "max_output_tokens": 100}
	for k, v := range info {
		mi[k] = v
	}
	return llm.ModelConfig{ModelName: name, LiteLLMParams: map[string]any{"model": "openai/upstream-" + name, "api_base": base, "api_key": "sk-up"}, ModelInfo: mi}
}

func chat(model string, extra ...any) map[string]any {
	b := map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func errorOf(t testing.TB, b []byte) (typ, param, msg, code string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %s: %v", b, err)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return e.Error.Type, param, e.Error.Message, e.Error.Code
}

func TestChatNonStreaming(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	resp, body := h.post("/v1/chat/completions", chat("gpt", "max_tokens", 50, "tools", []any{map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}, "metadata", map[string]any{"tags": []string{"m"}}),
		"x-litellm-tags", "h1,h2")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.Choices[0].Message.Content != "hello there" {
		t.Fatalf("body %s", body)
	}
	sent := up.body()
	if sent["model"] != "upstream-gpt" || sent["max_tokens"] != 50.0 || sent["tools"] == nil {
		t.Errorf("upstream body %v: want model rewritten, max_tokens and tools unchanged", sent)
	}
	for _, k := range []string{"metadata", "tags", "stream_options"} {
		if _, ok := sent[k]; ok {
			t.Errorf("upstream body carries %s", k)
		}
	}
	if up.lastAuth != "Bearer sk-up" {
		t.Errorf("upstream auth %q", up.lastAuth)
	}
	h.flush()
	want := 12*0.5 + 8*0.125
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, want) || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want %v and 0", b.Spend, b.Reserved, want)
	}
	for _, tag := range []string{"h1", "h2", "m"} {
		if b := h.budget(store.BudgetTag, tag); !approx(b.Spend, want) {
			t.Errorf("tag %s spend %v, want %v", tag, b.Spend, want)
		}
	}
	logs := h.logs()
	if len(logs) != 1 {
		t.Fatalf("got %d spend logs, want 1", len(logs))
	}
	l := logs[0]
	if l.KeyID != "key1" || l.KeyHash != "hash1" || l.Model != "gpt" || l.PromptTokens != 12 || l.CompletionTokens != 8 ||
		!approx(l.Spend, want) || l.Status != "success" || l.CallType != store.CallCompletion || strings.Join(l.Tags, ",") != "h1,h2,m" {
		t.Errorf("spend log %+v", l)
	}
	if resp.Header.Get("x-litellm-call-id") != l.RequestID {
		t.Errorf("call id header %q, log %q", resp.Header.Get("x-litellm-call-id"), l.RequestID)
	}
}

func TestChatStreaming(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	resp, body := h.post("/chat/completions", chat("gpt", "stream", true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var datas []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			datas = append(datas, d)
		}
	}
	// role chunk + 5 content + finish + usage + [DONE]
	if len(datas) != 9 || datas[8] != "[DONE]" || !strings.Contains(datas[7], `"usage"`) {
		t.Fatalf("got %d events: %v", len(datas), datas)
	}
	if _, ok := up.body()["stream_options"]; ok {
		t.Error("gateway added stream_options")
	}
	h.flush()
	want := 12*0.5 + 8*0.125
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, want) {
		t.Errorf("spend %v, want %v (usage from the stream)", b.Spend, want)
	}
}

func TestStreamingWithoutUsageEstimates(t *testing.T) {
	up := newFakeOpenAI(t)
	up.withUsage = false
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	resp, body := h.post("/v1/chat/completions", chat("gpt", "stream", true))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h.flush()
	l := h.logs()[0]
	// 5 chunks of 9 bytes: 45 bytes, 12 tokens.
	if l.CompletionTokens != 12 || l.PromptTokens == 0 || l.Spend <= 0 {
		t.Errorf("estimated log %+v", l)
	}
}

func TestMidStreamDisconnectChargesStreamed(t *testing.T) {
	up := newFakeOpenAI(t)
	up.withUsage = false
	up.chunks = 50
	up.chunkDelay = 20 * time.Millisecond
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	b, _ := json.Marshal(chat("gpt", "stream", true))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+"/v1/chat/completions", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	seen := 0
	for seen < 4 { // the role chunk and three content chunks
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			seen++
		}
	}
	cancel()
	resp.Body.Close()
	// The gateway learns that its caller left when the provider answers (the provider call
	// is not cut short: fasthttp takes no context); the call then counts as cancelled.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.logs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := h.logs()
	if len(logs) != 1 {
		t.Fatalf("got %d logs, want 1", len(logs))
	}
	l := logs[0]
	// Charged for what was streamed: a few chunks of 9 bytes, far from 50.
	if l.CompletionTokens < 3*9/4 || l.CompletionTokens > 10*9/4+1 || l.Status != "failure" {
		t.Errorf("log after disconnect: %+v", l)
	}
	bk := h.budget(store.BudgetKey, "key1")
	if bk.Reserved != 0 || !approx(bk.Spend, l.Spend) || l.Spend <= 0 {
		t.Errorf("budget after disconnect: spend %v reserved %v, log spend %v", bk.Spend, bk.Reserved, l.Spend)
	}
}

func TestBudgetExceeded(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	max := 5.0
	h.st.SetLimit(store.BudgetRef{Scope: store.BudgetTeam, ID: "team1"}, &max, nil, "", nil)
	// estimate: 2 prompt tokens (the messages array) x 0.5 + 100 (clamped) x 0.125 > 5
	resp, body := h.post("/v1/chat/completions", chat("gpt", "max_tokens", 999999999))
	if resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	typ, _, msg, code := errorOf(t, body)
	if typ != "budget_exceeded" || code != "400" || !strings.Contains(msg, "Team=team1") {
		t.Errorf("got %s %s %q", typ, code, msg)
	}
	if up.calls.Load() != 0 {
		t.Error("provider was called")
	}
	h.flush()
	if len(h.logs()) != 0 {
		t.Error("refused request was logged")
	}
}

func TestFailedCallReleasesReservation(t *testing.T) {
	up := newFakeOpenAI(t)
	up.fail = func(int64) int { return 400 }
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	resp, body := h.post("/v1/chat/completions", chat("gpt"))
	if resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, _, msg, _ := errorOf(t, body); msg != "fake failure 400" {
		t.Errorf("message %q", msg)
	}
	if up.calls.Load() != 1 {
		t.Errorf("a 400 was retried: %d calls", up.calls.Load())
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); b.Reserved != 0 || b.Spend != 0 {
		t.Errorf("after failure: spend %v reserved %v", b.Spend, b.Reserved)
	}
	if l := h.logs(); len(l) != 1 || l[0].Status != "failure" {
		t.Errorf("logs %+v", l)
	}
}

func TestBudgetRaceHTTP(t *testing.T) {
	up := newFakeOpenAI(t)
	up.completion = 8
	// Reservation: prompt tokens at 0 + 8 (max_tokens) x 0.125 = 1; actual spend the same.
	m := model("gpt", up.URL, map[string]any{"input_cost_per_token": 0})
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{m}})
	testBudgetRace(t, h, up)
}

func testBudgetRace(t *testing.T, h *harness, up *fakeOpenAI) {
	const total, n = 100, 23
	max := float64(n)
	h.setKeyLimit(max)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	b, _ := json.Marshal(chat("gpt", "max_tokens", 8))
	start := make(chan struct{})
	for range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Post(h.http.URL+"/v1/chat/completions", "application/json", bytes.NewReader(b))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if codes[200] != n || codes[400] != total-n {
		t.Errorf("status counts %v, want %d x 200 and %d x 400", codes, n, total-n)
	}
	if err := h.spend.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.countLogs(); got != n {
		t.Errorf("spend logs %d, want %d", got, n)
	}
	if c := up.calls.Load(); c != n {
		t.Errorf("provider calls %d, want %d", c, n)
	}
}

func (h *harness) setKeyLimit(max float64) { h.setLimitFn(h, max) }

func (h *harness) countLogs() int { return h.countFn(h) }

func TestRetriesFallbacksCooldown(t *testing.T) {
	bad := newFakeOpenAI(t)
	bad.fail = func(int64) int { return 500 }
	good := newFakeOpenAI(t)
	zero := 0
	_ = zero
	t.Run("retry on another deployment", func(t *testing.T) {
		bad.calls.Store(0)
		good.calls.Store(0)
		a, b := model("gpt", bad.URL, map[string]any{"id": "bad"}), model("gpt", good.URL, map[string]any{"id": "good"})
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{a, b}, router: llm.RouterSettings{AllowedFails: 1, CooldownTime: 60, RetryAfter: 0.001}})
		for range 10 {
			resp, body := h.post("/v1/chat/completions", chat("gpt"))
			if resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "good" {
				t.Fatalf("status %d model %s: %s", resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
			}
		}
		// The bad deployment failed at most once, then cooled down.
		if c := bad.calls.Load(); c > 1 {
			t.Errorf("bad deployment called %d times, want <= 1 (cooldown)", c)
		}
	})
	t.Run("retry the same deployment on cue", func(t *testing.T) {
		flaky := newFakeOpenAI(t)
		flaky.fail = func(n int64) int {
			if n <= 2 {
				return 429
			}
			return 0
		}
		two := 2
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", flaky.URL, nil)}, router: llm.RouterSettings{NumRetries: &two, CooldownTime: 0.001, RetryAfter: 0.001}})
		resp, body := h.post("/v1/chat/completions", chat("gpt"))
		if resp.StatusCode != 200 || flaky.calls.Load() != 3 {
			t.Fatalf("status %d after %d calls: %s", resp.StatusCode, flaky.calls.Load(), body)
		}
	})
	t.Run("fallback to another model", func(t *testing.T) {
		one := 1
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("primary", bad.URL, map[string]any{"id": "p"}), model("backup", good.URL, map[string]any{"id": "b"})},
			router: llm.RouterSettings{NumRetries: &one, RetryAfter: 0.001, Fallbacks: []map[string][]string{{"primary": {"backup"}}}}})
		resp, body := h.post("/v1/chat/completions", chat("primary"))
		if resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "b" {
			t.Fatalf("status %d model %s: %s", resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
		}
		if good.body()["model"] != "upstream-backup" {
			t.Errorf("fallback sent model %v", good.body()["model"])
		}
	})
	t.Run("retries exhausted", func(t *testing.T) {
		bad.calls.Store(0)
		one := 1
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", bad.URL, nil)}, router: llm.RouterSettings{NumRetries: &one, RetryAfter: 0.001, AllowedFails: 10}})
		resp, body := h.post("/v1/chat/completions", chat("gpt"))
		if resp.StatusCode != 500 || bad.calls.Load() != 2 {
			t.Fatalf("status %d after %d calls: %s", resp.StatusCode, bad.calls.Load(), body)
		}
		if b := h.budget(store.BudgetKey, "key1"); b.Reserved != 0 {
			t.Errorf("reservation held after failure: %v", b.Reserved)
		}
	})
	t.Run("timeout then another deployment", func(t *testing.T) {
		slow := newFakeOpenAI(t)
		slow.delay = 2 * time.Second
		fast := newFakeOpenAI(t)
		s := model("gpt", slow.URL, map[string]any{"id": "slow"})
		s.LiteLLMParams["timeout"] = 0.05
		s.LiteLLMParams["weight"] = 1000
		f := model("gpt", fast.URL, map[string]any{"id": "fast"})
		f.LiteLLMParams["weight"] = 0.001
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{s, f}, router: llm.RouterSettings{RetryAfter: 0.001}})
		for range 3 {
			resp, body := h.post("/v1/chat/completions", chat("gpt"))
			if resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "fast" {
				t.Fatalf("status %d model %s: %s", resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
			}
		}
	})
}

func TestRoutingStrategies(t *testing.T) {
	a, b := newFakeOpenAI(t), newFakeOpenAI(t)
	ma, mb := model("gpt", a.URL, map[string]any{"id": "a"}), model("gpt", b.URL, map[string]any{"id": "b"})
	ma.LiteLLMParams["rpm"] = 900
	mb.LiteLLMParams["rpm"] = 100
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{ma, mb}})
	for range 200 {
		if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	if a.calls.Load() < 140 || b.calls.Load() < 5 {
		t.Errorf("simple-shuffle weighted by rpm: a=%d b=%d", a.calls.Load(), b.calls.Load())
	}
	for _, strat := range []string{llm.LeastBusy, llm.LowestLatency, "lowest-latency"} {
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{ma, mb}, router: llm.RouterSettings{RoutingStrategy: strat}})
		if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", strat, resp.StatusCode, body)
		}
	}
	if _, err := llm.New(llm.Config{Router: llm.RouterSettings{RoutingStrategy: "nope"}}); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestRateLimits(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	h.caller.Limits = []budget.Rule{{Scope: store.BudgetKey, ID: "key1", RPM: 2}}
	for i := range 2 {
		resp, body := h.post("/v1/chat/completions", chat("gpt"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if resp.Header.Get("x-ratelimit-limit-requests") != "2" || resp.Header.Get("x-ratelimit-remaining-requests") != fmt.Sprint(1-i) {
			t.Errorf("success headers %v", resp.Header)
		}
	}
	resp, body := h.post("/v1/chat/completions", chat("gpt"))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("x-ratelimit-limit-requests") != "2" || resp.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Fatalf("status %d headers %v: %s", resp.StatusCode, resp.Header, body)
	}
	if typ, _, _, _ := errorOf(t, body); typ != "rate_limit_error" {
		t.Errorf("type %s", typ)
	}
	// Deployment rpm: one deployment with rpm 1 answers once, then 429.
	d := model("solo", up.URL, nil)
	d.LiteLLMParams["rpm"] = 1
	h2 := newHarness(t, harnessOpts{models: []llm.ModelConfig{d}})
	if resp, _ := h2.post("/v1/chat/completions", chat("solo")); resp.StatusCode != 200 {
		t.Fatalf("first call %d", resp.StatusCode)
	}
	if resp, body := h2.post("/v1/chat/completions", chat("solo")); resp.StatusCode != 429 {
		t.Fatalf("second call %d: %s", resp.StatusCode, body)
	}
}

func TestModelAccess(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), model("claude", up.URL, nil)}})
	h.caller.Models = []string{"gpt"}
	resp, body := h.post("/v1/chat/completions", chat("claude"))
	if resp.StatusCode != 401 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	resp, body = h.get("/v1/models")
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	_ = json.Unmarshal(body, &list)
	if resp.StatusCode != 200 || len(list.Data) != 1 || list.Data[0].ID != "gpt" {
		t.Errorf("models %s", body)
	}
	h.caller.Models = nil
	resp, body = h.post("/v1/chat/completions", chat("nope"))
	if _, param, msg, _ := errorOf(t, body); resp.StatusCode != 400 || param != "model" || !strings.Contains(msg, "model=nope") {
		t.Errorf("unknown model: %d %s", resp.StatusCode, body)
	}
}

func TestEmbeddingsAndImages(t *testing.T) {
	up := newFakeOpenAI(t)
	emb := model("emb", up.URL, map[string]any{"input_cost_per_token": 0.25, "mode": "embedding"})
	img := llm.ModelConfig{ModelName: "img", LiteLLMParams: map[string]any{"model": "openai/dall-e-3", "api_base": up.URL, "api_key": "k"},
		ModelInfo: map[string]any{"output_cost_per_image": 0.02}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{emb, img}})
	resp, body := h.post("/v1/embeddings", map[string]any{"model": "emb", "input": "hello"})
	if resp.StatusCode != 200 {
		t.Fatalf("embeddings %d: %s", resp.StatusCode, body)
	}
	resp, body = h.post("/v1/images/generations", map[string]any{"model": "img", "prompt": "a cat", "n": 2})
	if resp.StatusCode != 200 {
		t.Fatalf("images %d: %s", resp.StatusCode, body)
	}
	h.flush()
	byType := map[string]*store.SpendLog{}
	for _, l := range h.logs() {
		byType[l.CallType] = l
	}
	if l := byType[store.CallEmbedding]; l == nil || !approx(l.Spend, 6*0.25) {
		t.Errorf("embedding log %+v", l)
	}
	// dall-e-3 in the cost map: input_cost_per_image 0.04; plus output 0.02 from model_info.
	if l := byType[store.CallImageGeneration]; l == nil || !approx(l.Spend, 2*(0.04+0.02)) {
		t.Errorf("image log %+v", l)
	}
}

// TestChatModelWithImagePricesIsPricedByTokens: a chat model whose price entry also
// carries per-image prices (vision models do) is reserved and charged by tokens; only a
// model whose mode is image_generation or image_edit is priced per image.
func TestChatModelWithImagePricesIsPricedByTokens(t *testing.T) {
	up := newFakeOpenAI(t)
	vision := model("vision", up.URL, map[string]any{"mode": "chat", "input_cost_per_image": 100.0, "output_cost_per_image": 100.0})
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{vision}})
	// Worst case by tokens: about 11 prompt tokens x 0.5 + 100 x 0.125 = 18; per image it
	// would be 200, which this budget refuses.
	h.setKeyLimit(50)
	resp, body := h.post("/v1/chat/completions", chat("vision"))
	if resp.StatusCode != 200 {
		t.Fatalf("chat on a vision model with a budget of 50: %d %s", resp.StatusCode, body)
	}
	h.flush()
	if b, want := h.budget(store.BudgetKey, "key1"), 12*0.5+8*0.125; !approx(b.Spend, want) {
		t.Errorf("key spend %v, want %v (tokens, not images)", b.Spend, want)
	}
}

func TestAnthropicTranslation(t *testing.T) {
	an := newFakeAnthropic(t)
	an.toolCall = true
	mc := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc}})
	req := map[string]any{"model": "claude", "max_tokens": 300, "stop": "END", "tool_choice": "required",
		"messages": []any{
			map[string]any{"role": "system", "content": "be brief"},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "weather?"}, map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,AAAA"}}}},
			map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`}}}},
			map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
		},
		"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "d", "parameters": map[string]any{"type": "object"}}}},
	}
	resp, body := h.post("/v1/chat/completions", req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	sent := an.body()
	if an.lastKey != "sk-ant" || sent["model"] != "claude-test" || sent["system"] != "be brief" || sent["max_tokens"] != 300.0 {
		t.Errorf("sent %v", sent)
	}
	if tc := sent["tool_choice"].(map[string]any); tc["type"] != "any" {
		t.Errorf("tool_choice %v", tc)
	}
	tools := sent["tools"].([]any)
	if tl := tools[0].(map[string]any); tl["name"] != "get_weather" || tl["input_schema"] == nil {
		t.Errorf("tools %v", tools)
	}
	msgs := sent["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("messages %v", msgs)
	}
	asst := msgs[1].(map[string]any)["content"].([]any)[0].(map[string]any)
	if asst["type"] != "tool_use" || asst["id"] != "call_1" || asst["input"].(map[string]any)["city"] != "Paris" {
		t.Errorf("assistant %v", asst)
	}
	res := msgs[2].(map[string]any)["content"].([]any)[0].(map[string]any)
	if res["type"] != "tool_result" || res["tool_use_id"] != "call_1" || res["content"] != "sunny" {
		t.Errorf("tool result %v", res)
	}
	var got struct {
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage llm.Usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Choices[0]
	if c.FinishReason != "tool_calls" || c.Message.Content != "Checking." || len(c.Message.ToolCalls) != 1 ||
		c.Message.ToolCalls[0].Function.Name != "get_weather" || c.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Errorf("choice %+v", c)
	}
	if got.Usage.PromptTokens != 20 || got.Usage.CompletionTokens != 30 || got.Usage.TotalTokens != 50 {
		t.Errorf("usage %+v", got.Usage)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, 20*0.001+30*0.002) {
		t.Errorf("spend %v", b.Spend)
	}
}

func TestAnthropicStreaming(t *testing.T) {
	an := newFakeAnthropic(t)
	mc := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL + "/v1", "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc}})
	resp, body := h.post("/v1/chat/completions", chat("claude", "stream", true))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var text, args, name, finish string
	done := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if d == "[DONE]" {
			done = true
			continue
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Index    int
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(d), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %s: %v", d, err)
		}
		ch := c.Choices[0]
		if ch.Delta.Content != nil {
			text += *ch.Delta.Content
		}
		for _, tc := range ch.Delta.ToolCalls {
			name += tc.Function.Name
			args += tc.Function.Arguments
		}
		if ch.FinishReason != nil {
			finish = *ch.FinishReason
		}
	}
	if !done || text != "Let me check" || name != "get_weather" || args != `{"city":"Paris"}` || finish != "tool_calls" {
		t.Errorf("got done=%v text=%q name=%q args=%q finish=%q", done, text, name, args, finish)
	}
	h.flush()
	if l := h.logs(); len(l) != 1 || l[0].PromptTokens != 20 || l[0].CompletionTokens != 30 {
		t.Errorf("logs %+v", l[0])
	}
}

func TestAzureURL(t *testing.T) {
	up := newFakeOpenAI(t)
	mc := llm.ModelConfig{ModelName: "az", LiteLLMParams: map[string]any{"model": "azure/my-deploy", "api_base": up.URL, "api_key": "os.environ/TOOLGATE_TEST_AZURE_KEY", "api_version": "2024-06-01"},
		ModelInfo: map[string]any{"base_model": "gpt-4o"}}
	t.Setenv("TOOLGATE_TEST_AZURE_KEY", "az-secret")
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc}})
	resp, body := h.post("/v1/chat/completions", chat("az"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if up.lastPath != "/openai/deployments/my-deploy/chat/completions?api-version=2024-06-01" || up.lastAuth != "az-secret" {
		t.Errorf("path %s auth %s", up.lastPath, up.lastAuth)
	}
	h.flush()
	// base_model prices from the cost map: gpt-4o.
	if l := h.logs()[0]; !approx(l.Spend, 12*2.5e-6+8*1e-5) {
		t.Errorf("spend %v", l.Spend)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, mc := range []llm.ModelConfig{
		{ModelName: "", LiteLLMParams: map[string]any{"model": "openai/x"}},
		{ModelName: "x", LiteLLMParams: map[string]any{}},
		{ModelName: "x", LiteLLMParams: map[string]any{"model": "azure/x"}},
		{ModelName: "x", LiteLLMParams: map[string]any{"model": "openai/x", "api_key": "os.environ/TOOLGATE_SURELY_UNSET_VAR"}},
	} {
		if _, err := llm.New(llm.Config{Models: []llm.ModelConfig{mc}}); err == nil {
			t.Errorf("config %+v accepted", mc)
		}
	}
	list, err := llm.ModelConfigsFromMaps([]map[string]any{{"model_name": "m", "litellm_params": map[string]any{"model": "openai/gpt-4o", "rpm": 5}}})
	if err != nil || len(list) != 1 || list[0].ModelName != "m" {
		t.Fatalf("ModelConfigsFromMaps: %v %v", list, err)
	}
}

func TestNoCaller(t *testing.T) {
	srv, err := llm.New(llm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{}`)))
	if rec.Code != 401 {
		t.Errorf("status %d", rec.Code)
	}
}

var _ = fmt.Sprint

func TestReservationCoversEveryChoice(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	max := 30.0
	h.st.SetLimit(store.BudgetRef{Scope: store.BudgetKey, ID: "key1"}, &max, nil, "", nil)
	// One choice: about 11 prompt tokens x 0.5 + 100 x 0.125 = 18 fits; three choices
	// reserve 100 output tokens each and do not.
	if resp, body := h.post("/v1/chat/completions", chat("gpt", "n", 3)); resp.StatusCode != 400 {
		t.Fatalf("n=3: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
		t.Fatalf("n=1: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.post("/v1/chat/completions", chat("gpt", "n", 0)); resp.StatusCode != 400 {
		t.Fatalf("n=0: %d %s", resp.StatusCode, body)
	}
}

func TestCancelledCallReleasesReservation(t *testing.T) {
	up := newFakeOpenAI(t)
	up.delay = 3 * time.Second
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	b, _ := json.Marshal(chat("gpt"))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+"/v1/chat/completions", bytes.NewReader(b))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("call finished: %d", resp.StatusCode)
	}
	// The gateway learns that its caller left when the provider answers (the provider call
	// is not cut short: fasthttp takes no context); the call then counts as cancelled.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.logs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := h.logs(); len(l) != 1 || l[0].Status != "failure" || l[0].Spend != 0 {
		t.Fatalf("logs %+v", l)
	}
	if bk := h.budget(store.BudgetKey, "key1"); bk.Reserved != 0 || bk.Spend != 0 {
		t.Errorf("after cancel: spend %v reserved %v", bk.Spend, bk.Reserved)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := llm.Config{Router: llm.RouterSettings{RoutingStrategy: "bogus"}, Models: []llm.ModelConfig{
		{ModelName: "a", LiteLLMParams: map[string]any{}},
		{ModelName: "b", LiteLLMParams: map[string]any{"model": "azure/x"}},
	}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"routing_strategy", "model a", "model b"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	rs, err := llm.RouterSettingsFromMap(map[string]any{"num_retries": 4, "fallbacks": []any{map[string]any{"a": []any{"b"}}}, "redis_url": "x"})
	if err != nil || *rs.NumRetries != 4 || rs.Fallbacks[0]["a"][0] != "b" {
		t.Errorf("RouterSettingsFromMap: %+v %v", rs, err)
	}
	if err := (llm.Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

// TestPanicReleasesReservation: a call that panics after its reservation (here in the
// provider transport) does not leave budget held: with leases, a held call would keep its
// lease, and every other call's spend in it, from ever settling.
func TestPanicReleasesReservation(t *testing.T) {
	for _, lease := range []time.Duration{0, time.Hour} {
		st := budgettest.New()
		key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
		max := 1e6 // room for a lease of many calls
		st.SetLimit(key, &max, nil, "", nil)
		m, _ := budget.New(budget.Config{Store: st, LeaseFor: lease})
		client := &http.Client{Transport: rtFunc(func(*http.Request) (*http.Response, error) { panic("provider transport bug") })}
		srv, err := llm.New(llm.Config{Models: []llm.ModelConfig{model("gpt", "http://provider.invalid", nil)}, Budget: m, HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`))
		req = req.WithContext(llm.WithCaller(req.Context(), &llm.Caller{KeyID: "k", Budgets: []store.BudgetRef{key}}))
		func() {
			defer func() { _ = recover() }()
			srv.ServeHTTP(httptest.NewRecorder(), req)
		}()
		if err := m.Close(); err != nil { // settles the lease, if any
			t.Fatalf("lease %v: close: %v", lease, err)
		}
		if b, _ := st.Budget(context.Background(), key); b.Reserved != 0 || b.Spend != 0 {
			t.Errorf("lease %v: after a panicking call: spend %v reserved %v, want 0 and 0", lease, b.Spend, b.Reserved)
		}
		srv.Close()
	}
}

// TestEndUserSources: the end user a call is logged under (and budgeted to) is the body's
// user, else litellm_metadata.user (also as a JSON string or a number), else
// safety_identifier; Anthropic's metadata.user_id is not one.
func TestEndUserSources(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	for _, tc := range []struct {
		name  string
		extra []any
		want  string
	}{
		{"user", []any{"user", "alice", "litellm_metadata", map[string]any{"user": "bob"}, "safety_identifier", "sid"}, "alice"},
		{"litellm_metadata.user", []any{"litellm_metadata", map[string]any{"user": "bob"}, "safety_identifier", "sid"}, "bob"},
		{"litellm_metadata as a string", []any{"litellm_metadata", `{"user":"carol"}`}, "carol"},
		{"numeric litellm_metadata.user", []any{"litellm_metadata", map[string]any{"user": 42}}, "42"},
		{"safety_identifier", []any{"safety_identifier", "sid-1"}, "sid-1"},
		{"metadata.user_id", []any{"metadata", map[string]any{"user_id": "session-blob"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.post("/v1/chat/completions", chat("gpt", tc.extra...))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			id := resp.Header.Get("x-litellm-call-id")
			h.flush()
			for _, l := range h.logs() {
				if l.RequestID == id {
					if l.EndUser != tc.want {
						t.Errorf("end user %q, want %q", l.EndUser, tc.want)
					}
					return
				}
			}
			t.Fatalf("no spend row for call %s", id)
		})
	}
}

// TestNegativeUsageNotCredited: a provider reporting negative token counts (a bug, or a
// hostile OpenAI-compatible server) cannot credit a budget: the counts read as zero.
func TestNegativeUsageNotCredited(t *testing.T) {
	up := newFakeOpenAI(t)
	up.completion = -50 // 12 prompt tokens, -50 completion tokens
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	for _, stream := range []bool{false, true} {
		if resp, body := h.post("/v1/chat/completions", chat("gpt", "stream", stream)); resp.StatusCode != 200 {
			t.Fatalf("stream %v: %d %s", stream, resp.StatusCode, body)
		}
	}
	h.flush()
	for _, l := range h.logs() {
		if l.CompletionTokens != 0 || !approx(l.Spend, 12*0.5) {
			t.Errorf("charged %v for %d completion tokens, want 6 for 0", l.Spend, l.CompletionTokens)
		}
	}
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, 12) {
		t.Errorf("key spend %v, want 12", b.Spend)
	}
}
