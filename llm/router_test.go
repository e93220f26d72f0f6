package llm

import (
	"strings"
	"testing"
	"time"
)

func TestPickStrategies(t *testing.T) {
	a, b, c := &Deployment{ID: "a"}, &Deployment{ID: "b"}, &Deployment{ID: "c"}
	ds := []*Deployment{a, b, c}
	now := time.Now()
	clock := func() time.Time { return now }

	lb, _ := newRouter(RouterSettings{RoutingStrategy: LeastBusy}, nil, clock)
	a.inflight.Store(3)
	b.inflight.Store(1)
	c.inflight.Store(2)
	if got := lb.pick(ds, nil); got != b {
		t.Errorf("least-busy picked %s, want b", got.ID)
	}
	if got := lb.pick(ds, map[*Deployment]bool{b: true}); got != c {
		t.Errorf("least-busy after trying b picked %s, want c", got.ID)
	}

	ll, _ := newRouter(RouterSettings{RoutingStrategy: "lowest-latency"}, nil, clock)
	a.latency.Store(int64(30 * time.Millisecond))
	b.latency.Store(int64(10 * time.Millisecond))
	c.latency.Store(int64(20 * time.Millisecond))
	if got := ll.pick(ds, nil); got != b {
		t.Errorf("lowest-latency picked %s, want b", got.ID)
	}
	b.coolUntil.Store(now.Add(time.Second).UnixNano())
	if got := ll.pick(ds, nil); got != c {
		t.Errorf("lowest-latency with b cooling picked %s, want c", got.ID)
	}
	now = now.Add(2 * time.Second)
	if got := ll.pick(ds, nil); got != b {
		t.Errorf("after the cooldown picked %s, want b again", got.ID)
	}
	for _, d := range ds {
		d.coolUntil.Store(now.Add(time.Minute).UnixNano())
	}
	if got := ll.pick(ds, nil); got != nil {
		t.Errorf("all cooling: picked %s, want none", got.ID)
	}

	lc, _ := newRouter(RouterSettings{RoutingStrategy: LowestCost}, nil, clock)
	now = now.Add(time.Hour)
	a.Price.InputCostPerToken, b.Price.InputCostPerToken, c.Price.InputCostPerToken = 3, 2, 1
	if got := lc.pick(ds, nil); got != c {
		t.Errorf("cost-based picked %s, want c", got.ID)
	}
	if r, err := newRouter(RouterSettings{RoutingStrategy: "usage-based-routing-v2"}, nil, clock); err != nil || r.settings.RoutingStrategy != LeastBusy {
		t.Errorf("usage-based-routing-v2: %v", err)
	}

	ss, _ := newRouter(RouterSettings{}, nil, clock)
	now = now.Add(time.Hour)
	a.Weight, b.Weight, c.Weight = 0.000001, 1, 0.000001
	hits := map[string]int{}
	for range 1000 {
		hits[ss.pick(ds, nil).ID]++
	}
	if hits["b"] < 990 {
		t.Errorf("weighted shuffle: %v", hits)
	}
}

func TestEWMALatency(t *testing.T) {
	r, _ := newRouter(RouterSettings{}, nil, time.Now)
	d := &Deployment{}
	r.success(d, 100*time.Millisecond)
	r.success(d, 0)
	if got := time.Duration(d.latency.Load()); got != 80*time.Millisecond {
		t.Errorf("latency %v, want 80ms", got)
	}
}

// TestClassOf: the refusals that have fallbacks of their own are told apart by the
// provider's code or, without one, its words, as OpenAI, Azure, Anthropic and vLLM send
// them; other errors, and these words in a retryable or non-4xx error, are not.
func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   errClass
	}{
		{400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, errContextWindow},
		{400, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`, errContextWindow},
		{400, `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","code":400}`, errContextWindow}, // vLLM: no error object
		{400, `{"error":{"message":"Input is too long for requested model.","type":"invalid_request_error"}}`, errContextWindow},
		{413, `{"error":{"message":"Request too large: too many tokens","type":"invalid_request_error"}}`, errContextWindow},
		{400, `{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}`, errContentPolicy},
		{400, `{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}`, errContentPolicy},
		{400, `{"error":{"message":"Invalid value for 'temperature': must be at most 2.","type":"invalid_request_error","code":"invalid_value"}}`, errOther},
		{429, `{"error":{"message":"Request too large for gpt-4o: too many tokens per min","type":"tokens","code":"rate_limit_exceeded"}}`, errOther},
		{500, `{"error":{"message":"context length","type":"server_error"}}`, errOther},
	} {
		if got := classOf(upstreamErrorOf(tc.status, "", []byte(tc.body))); got != tc.want {
			t.Errorf("%d %s: class %d, want %d", tc.status, tc.body, got, tc.want)
		}
	}
}

// TestFirstOrder: the router picks among the lowest litellm_params.order that can take a
// call; deployments without one come last; without orders, all are candidates.
func TestFirstOrder(t *testing.T) {
	a, b, c, none := &Deployment{ID: "a", Order: 1}, &Deployment{ID: "b", Order: 2}, &Deployment{ID: "c", Order: 1}, &Deployment{ID: "none"}
	ids := func(ds []*Deployment) (out []string) {
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	for _, tc := range []struct {
		pool []*Deployment
		want string
	}{
		{[]*Deployment{b, a, none, c}, "a,c"},
		{[]*Deployment{none, b}, "b"},
		{[]*Deployment{none, &Deployment{ID: "x"}}, "none,x"},
	} {
		if got := strings.Join(ids(firstOrder(tc.pool)), ","); got != tc.want {
			t.Errorf("firstOrder(%v) = %s, want %s", ids(tc.pool), got, tc.want)
		}
	}
	now := time.Now()
	r, _ := newRouter(RouterSettings{}, nil, func() time.Time { return now })
	for range 50 {
		if got := r.pick([]*Deployment{b, a, none}, nil); got != a {
			t.Fatalf("picked %s, want a (order 1)", got.ID)
		}
	}
	if got := r.pick([]*Deployment{b, a, none}, map[*Deployment]bool{a: true}); got != b {
		t.Errorf("after a failed: picked %s, want b (order 2)", got.ID)
	}
	a.coolUntil.Store(now.Add(time.Minute).UnixNano())
	if got := r.pick([]*Deployment{b, a, none}, nil); got != b {
		t.Errorf("a cooling down: picked %s, want b", got.ID)
	}
}
