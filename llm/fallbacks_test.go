package llm_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm"
)

// refuser answers every call with status and body, counting calls.
func refuser(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// TestRefusalFallbacks: a call the provider refuses as longer than the context window goes
// to the model's context_window_fallbacks, one refused by content policy to its
// content_policy_fallbacks, each without retrying the refusal or cooling the deployment
// down; without such a list, the general fallbacks apply (as in LiteLLM). A plainly bad
// request falls back nowhere. default_fallbacks (and a "*" entry) serve models without
// fallbacks of their own.
func TestRefusalFallbacks(t *testing.T) {
	tooLong, longCalls := refuser(t, 400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`)
	policy, policyCalls := refuser(t, 400, `{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}`)
	bad, badCalls := refuser(t, 400, `{"error":{"message":"Invalid value for 'temperature'.","type":"invalid_request_error","code":"invalid_value"}}`)
	down, _ := refuser(t, 503, `{"error":{"message":"overloaded","type":"server_error"}}`)
	big, general := newFakeOpenAI(t), newFakeOpenAI(t)
	two := 2
	models := []llm.ModelConfig{
		model("small", tooLong.URL, map[string]any{"id": "small"}),
		model("small-general", tooLong.URL, map[string]any{"id": "small-general"}),
		model("strict", policy.URL, map[string]any{"id": "strict"}),
		model("bad", bad.URL, map[string]any{"id": "bad"}),
		model("down", down.URL, map[string]any{"id": "down"}),
		model("big", big.URL, map[string]any{"id": "big"}),
		model("general", general.URL, map[string]any{"id": "general"}),
	}
	rs := llm.RouterSettings{NumRetries: &two, RetryAfter: 0.001, AllowedFails: 1, CooldownTime: 60,
		Fallbacks:              []map[string][]string{{"small": {"general"}}, {"small-general": {"general"}}, {"bad": {"general"}}},
		ContextWindowFallbacks: []map[string][]string{{"small": {"big"}}},
		ContentPolicyFallbacks: []map[string][]string{{"strict": {"big"}}},
		DefaultFallbacks:       []string{"general"},
	}
	h := newHarness(t, harnessOpts{models: models, router: rs})
	for _, tc := range []struct {
		model, answeredBy string
		calls             *atomic.Int64 // of the refusing deployment: 1 per call, refusals are not retried
	}{
		{"small", "big", longCalls},
		{"small", "big", longCalls}, // not cooled down: a refusal is not a failure of the deployment
		{"small-general", "general", longCalls},
		{"strict", "big", policyCalls},
		{"down", "general", nil},
	} {
		before := int64(0)
		if tc.calls != nil {
			before = tc.calls.Load()
		}
		resp, body := h.post("/v1/chat/completions", chat(tc.model))
		if resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != tc.answeredBy {
			t.Errorf("%s: %d from %q: %s; want an answer from %s", tc.model, resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body, tc.answeredBy)
		}
		if tc.calls != nil && tc.calls.Load() != before+1 {
			t.Errorf("%s: the refusing deployment got %d calls, want 1", tc.model, tc.calls.Load()-before)
		}
	}
	if general.calls.Load() != 2 || big.calls.Load() != 3 {
		t.Errorf("fallback calls: general %d, big %d; want 2 and 3", general.calls.Load(), big.calls.Load())
	}

	resp, body := h.post("/v1/chat/completions", chat("bad"))
	if _, _, msg, _ := errorOf(t, body); resp.StatusCode != 400 || msg != "Invalid value for 'temperature'." || badCalls.Load() != 1 || general.calls.Load() != 2 {
		t.Errorf("bad request: %d %s after %d calls (general %d); want the provider's 400, once, and no fallback",
			resp.StatusCode, body, badCalls.Load(), general.calls.Load())
	}

	h2 := newHarness(t, harnessOpts{models: models, router: llm.RouterSettings{RetryAfter: 0.001,
		Fallbacks: []map[string][]string{{"*": {"big"}}}, DefaultFallbacks: []string{"general"}}})
	if resp, body := h2.post("/v1/chat/completions", chat("small")); resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "big" {
		t.Errorf(`with fallbacks "*": %d from %q: %s; want big (it wins over default_fallbacks)`, resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
	}
}

// TestModelGroupAlias: a call to a model_group_alias is the model's call (its deployments,
// its spend log row); a key may make it when it may use either name; /v1/models lists the
// alias unless it is hidden; a model name is never taken for an alias; a malformed alias
// is refused at start, named.
func TestModelGroupAlias(t *testing.T) {
	up := newFakeOpenAI(t)
	rs := llm.RouterSettings{ModelGroupAlias: map[string]any{"gpt-4": "gpt", "secret": map[string]any{"model": "gpt", "hidden": true}, "other": "gpt"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), model("other", up.URL, nil)}, router: rs})
	for _, tc := range []struct {
		keyModels []string
		model     string
		status    int
		upstream  string
	}{
		{nil, "gpt-4", 200, "upstream-gpt"},
		{nil, "secret", 200, "upstream-gpt"},
		{nil, "other", 200, "upstream-other"}, // a model of its own: not the alias
		{[]string{"gpt-4"}, "gpt-4", 200, "upstream-gpt"},
		{[]string{"gpt"}, "gpt-4", 200, "upstream-gpt"},
		{[]string{"gpt-4"}, "gpt", 401, ""},
		{[]string{"other"}, "gpt-4", 401, ""},
	} {
		h.caller.Models = tc.keyModels
		resp, body := h.post("/v1/chat/completions", chat(tc.model))
		if resp.StatusCode != tc.status || (tc.status == 200 && up.body()["model"] != tc.upstream) {
			t.Errorf("key models %v, model %s: %d %s (provider got %v); want %d on %s", tc.keyModels, tc.model, resp.StatusCode, body, up.body()["model"], tc.status, tc.upstream)
		}
	}
	h.flush()
	if logs := h.logs(); len(logs) == 0 || logs[0].Model != "gpt" {
		t.Errorf("spend row model %q, want the model the alias stands for", logs[0].Model)
	}
	h.caller.Models = nil
	_, body := h.get("/v1/models")
	var list struct{ Data []struct{ ID string } }
	_ = json.Unmarshal(body, &list)
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if got := strings.Join(ids, ","); got != "gpt,gpt-4,other" {
		t.Errorf("/v1/models: %s, want gpt,gpt-4,other (secret hidden)", got)
	}

	// A fallback may name an alias.
	down := newFakeOpenAI(t)
	down.fail = func(int64) int { return 503 }
	zero := 0
	h2 := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), model("down", down.URL, nil)},
		router: llm.RouterSettings{NumRetries: &zero, ModelGroupAlias: map[string]any{"gpt-4": "gpt"}, Fallbacks: []map[string][]string{{"down": {"gpt-4"}}}}})
	if resp, body := h2.post("/v1/chat/completions", chat("down")); resp.StatusCode != 200 || up.body()["model"] != "upstream-gpt" {
		t.Errorf("fallback to an alias: %d %s, want the aliased model's answer", resp.StatusCode, body)
	}

	_, err := llm.New(llm.Config{Router: llm.RouterSettings{ModelGroupAlias: map[string]any{"gpt-4": 5}}})
	if err == nil || !strings.Contains(err.Error(), "model_group_alias.gpt-4") {
		t.Errorf("malformed alias: %v, want an error naming it", err)
	}
}

// TestDeploymentMaxParallel: a deployment's max_parallel_requests holds its calls in
// flight: a call past it goes to another deployment of the model, and with none left it
// gets 429 with Retry-After and the limit named, without reaching the provider.
func TestDeploymentMaxParallel(t *testing.T) {
	slow, other := newFakeOpenAI(t), newFakeOpenAI(t)
	slow.delay = 300 * time.Millisecond
	limited := model("gpt", slow.URL, map[string]any{"id": "limited"})
	limited.LiteLLMParams["max_parallel_requests"] = 1
	spare := model("gpt", other.URL, map[string]any{"id": "spare", "input_cost_per_token": 1}) // dearer: picked second
	zero := 0
	for _, tc := range []struct {
		name       string
		models     []llm.ModelConfig
		wantStatus int
	}{
		{"another deployment takes it", []llm.ModelConfig{limited, spare}, 200},
		{"none left", []llm.ModelConfig{limited}, 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow.calls.Store(0)
			h := newHarness(t, harnessOpts{models: tc.models, router: llm.RouterSettings{NumRetries: &zero, RoutingStrategy: llm.LowestCost}})
			done := make(chan struct{})
			go func() { // holds the limited deployment's one place
				defer close(done)
				h.post("/v1/chat/completions", chat("gpt"))
			}()
			for deadline := time.Now().Add(5 * time.Second); slow.calls.Load() < 1; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the first call never reached the limited deployment")
				}
			}
			resp, body := h.post("/v1/chat/completions", chat("gpt"))
			<-done
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("second call: %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if slow.calls.Load() != 1 {
				t.Errorf("the limited deployment got %d calls, want only the one in flight", slow.calls.Load())
			}
			if tc.wantStatus == 429 && (resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max_parallel_requests")) {
				t.Errorf("refusal: Retry-After %q, body %s; want a Retry-After and the limit named", resp.Header.Get("Retry-After"), body)
			}
		})
	}
}

// TestDeploymentOrder: litellm_params.order puts a model's deployments in tiers: calls go
// to order 1 while it answers, and to order 2 when it fails.
func TestDeploymentOrder(t *testing.T) {
	primary, backup := newFakeOpenAI(t), newFakeOpenAI(t)
	first := model("gpt", primary.URL, map[string]any{"id": "primary"})
	first.LiteLLMParams["order"] = 1
	second := model("gpt", backup.URL, map[string]any{"id": "backup"})
	second.LiteLLMParams["order"] = 2
	one := 1
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{second, first}, router: llm.RouterSettings{NumRetries: &one, RetryAfter: 0.001}})
	for range 10 {
		if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "primary" {
			t.Fatalf("%d from %q: %s; want the order-1 deployment", resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
		}
	}
	primary.fail = func(int64) int { return 503 }
	if resp, body := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 || resp.Header.Get("x-litellm-model-id") != "backup" {
		t.Errorf("order 1 failing: %d from %q: %s; want the order-2 deployment", resp.StatusCode, resp.Header.Get("x-litellm-model-id"), body)
	}
	if backup.calls.Load() != 1 {
		t.Errorf("backup calls %d, want 1", backup.calls.Load())
	}
}
