package llm_test

import (
	"encoding/json"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// TestResponsesPassThrough: /v1/responses sends OpenAI's Responses API request on with only
// the model renamed and the gateway's own fields dropped, returns the answer byte for byte,
// and charges the usage it reports, at the model's prices (12 input tokens at 0.5, 8 output
// at 0.125: 7).
func TestResponsesPassThrough(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	resp, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi", "instructions": "be brief",
		"max_output_tokens": 50, "metadata": map[string]any{"tags": []any{"t1"}}, "user": "alice"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if want := up.responsesAnswer("upstream-gpt", "completed"); asProvider(body, "resp_1") != want || !gatewayID.Match(body) {
		t.Errorf("answer %s, want the provider's %s with the gateway's response ID", body, want)
	}
	sent := up.body()
	if up.lastPath != "/responses" || sent["model"] != "upstream-gpt" || sent["input"] != "hi" || sent["instructions"] != "be brief" ||
		sent["max_output_tokens"] != 50.0 || sent["user"] != "alice" || sent["metadata"] != nil {
		t.Errorf("provider got %s %v, want the request with the deployment's model and no metadata", up.lastPath, sent)
	}
	h.flush()
	logs := h.logs()
	if len(logs) != 1 || logs[0].CallType != store.CallResponses || logs[0].PromptTokens != 12 || logs[0].CompletionTokens != 8 ||
		!approx(logs[0].Spend, 7) || logs[0].EndUser != "alice" || strings.Join(logs[0].Tags, ",") != "t1" || logs[0].Status != "success" {
		t.Errorf("spend log %+v, want one responses row of 12/8 tokens costing 7", logs[0])
	}
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, 7) || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want 7 and nothing held", b.Spend, b.Reserved)
	}
}

// TestResponsesStream: a streamed answer reaches the client event for event, with the
// Responses API's event names and no [DONE], and the usage of its final event is charged.
// A stream that ends without a final event is cut: the client gets an error event and the
// call is logged failed; one that ends with response.failed is charged and logged failed.
func TestResponsesStream(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	req := map[string]any{"model": "gpt", "input": "hi", "stream": true}
	resp, body := h.post("/v1/responses", req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if n := len(gatewayID.FindAll(body, -1)); n != 2 {
		t.Errorf("stream has %d gateway response IDs, want 2 (created, completed):\n%s", n, body)
	}
	got := asProvider(body, "resp_1")
	for _, w := range []string{
		"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"abcdefgh0\"}\n\n",
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":99,\"response\":" + up.responsesAnswer("upstream-gpt", "completed") + "}\n\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("stream lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "[DONE]") || !strings.HasSuffix(got, "}\n\n") {
		t.Errorf("stream should end with the provider's last event, no [DONE]:\n%s", got)
	}
	h.flush()
	if logs := h.logs(); len(logs) != 1 || logs[0].PromptTokens != 12 || logs[0].CompletionTokens != 8 || logs[0].Status != "success" {
		t.Fatalf("spend log %+v, want the final event's usage", logs)
	}

	up.respEnd = "cut"
	if _, body = h.post("/v1/responses", req); !strings.HasSuffix(string(body), "event: error\ndata: {\"code\":\"internal_server_error\",\"message\":\"the provider's stream ended before its end\",\"param\":null,\"type\":\"error\"}\n\n") {
		t.Errorf("cut stream ends:\n%s\nwant a Responses API error event", body)
	}
	up.respEnd = "response.failed"
	if _, body = h.post("/v1/responses", req); !strings.Contains(string(body), "event: response.failed\n") {
		t.Errorf("failed stream:\n%s", body)
	}
	h.flush()
	logs := h.logs()
	if len(logs) != 3 {
		t.Fatalf("got %d spend rows, want 3", len(logs))
	}
	for _, l := range logs[:2] { // newest first
		if l.Status != "failure" {
			t.Errorf("row %+v: want status failure", l)
		}
	}
	if l := logs[0]; l.CompletionTokens != 8 || l.PromptTokens != 12 { // response.failed reports its usage
		t.Errorf("failed answer charged %d/%d tokens, want its reported 12/8", l.PromptTokens, l.CompletionTokens)
	}
}

// TestResponsesRefusals: a background response, whose cost would come after the call, is
// refused before anything is spent; so is what a translated model cannot carry.
func TestResponsesRefusals(t *testing.T) {
	up := newFakeOpenAI(t)
	an := newFakeAnthropic(t)
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), claude}})
	for _, tc := range []struct {
		name, param string
		body        map[string]any
	}{
		{"background", "background", map[string]any{"model": "gpt", "input": "hi", "background": true}},
		{"hosted tool on a translated model", "tools", map[string]any{"model": "claude", "input": "hi", "tools": []any{map[string]any{"type": "web_search"}}}},
		{"stored state on a translated model", "previous_response_id", map[string]any{"model": "claude", "input": "hi", "previous_response_id": "resp_1"}},
		{"an unknown text format on a translated model", "text", map[string]any{"model": "claude", "input": "hi", "text": map[string]any{"format": map[string]any{"type": "xml"}}}},
		{"a file on a translated model", "input", map[string]any{"model": "claude", "input": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "input_file", "file_id": "f"}}}}}},
	} {
		resp, body := h.post("/v1/responses", tc.body)
		if typ, param, _, _ := errorOf(t, body); resp.StatusCode != 400 || param != tc.param || typ != "invalid_request_error" {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, resp.StatusCode, body, tc.param)
		}
	}
	if up.calls.Load() != 0 || an.body() != nil {
		t.Error("a refused call reached a provider")
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); b.Spend != 0 || math.Abs(b.Reserved) > 1e-12 {
		t.Errorf("key spend %v reserved %v after refusals, want nothing", b.Spend, b.Reserved)
	}
}

// TestAzureResponsesURL: an azure/ deployment's Responses API calls go to the resource's
// /openai/responses, not under the deployment, with its api-version.
func TestAzureResponsesURL(t *testing.T) {
	up := newFakeOpenAI(t)
	mc := llm.ModelConfig{ModelName: "az", LiteLLMParams: map[string]any{"model": "azure/my-deploy", "api_base": up.URL, "api_key": "az-secret"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc}})
	if resp, body := h.post("/v1/responses", map[string]any{"model": "az", "input": "hi"}); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if up.lastPath != "/openai/responses?api-version=2025-04-01-preview" || up.body()["model"] != "my-deploy" || up.lastAuth != "az-secret" {
		t.Errorf("path %s model %v auth %s", up.lastPath, up.body()["model"], up.lastAuth)
	}
}

// gatewayID matches the response IDs the gateway gives callers.
var gatewayID = regexp.MustCompile(`"id":"resp_tg1_[A-Za-z0-9_-]+"`)

// asProvider is b with the gateway's response IDs put back to the provider's id.
func asProvider(b []byte, id string) string {
	return gatewayID.ReplaceAllString(string(b), `"id":"`+id+`"`)
}

// responseIDOf is the id of a Responses API answer.
func responseIDOf(t *testing.T, body []byte) string {
	t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal(body, &v); err != nil || !strings.HasPrefix(v.ID, "resp_tg1_") {
		t.Fatalf("answer %s: want a gateway response ID", body)
	}
	return v.ID
}

// TestResponseAffinity: with two deployments behind one model name, a call continuing a
// response (previous_response_id) goes to the deployment that made it, with the
// provider's own ID, streamed or not; without previous_response_id both are used.
func TestResponseAffinity(t *testing.T) {
	a, b := newFakeOpenAI(t), newFakeOpenAI(t)
	a.respID, b.respID = "resp_A", "resp_B"
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", a.URL, nil), model("gpt", b.URL, nil)}})
	resp, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	id := responseIDOf(t, body)
	holder, other, raw := a, b, "resp_A"
	if b.calls.Load() == 1 {
		holder, other, raw = b, a, "resp_B"
	}
	for i := range 20 { // a free pick would use the other for a chance of 1 in 10⁶
		req := map[string]any{"model": "gpt", "input": "and then?", "previous_response_id": id, "stream": i%2 == 1}
		resp, body := h.post("/v1/responses", req)
		if resp.StatusCode != 200 || !gatewayID.Match(body) {
			t.Fatalf("follow-up %d: status %d: %s", i, resp.StatusCode, body)
		}
		if got := holder.body()["previous_response_id"]; got != raw {
			t.Fatalf("follow-up %d: provider got previous_response_id %v, want its own %s", i, got, raw)
		}
	}
	if holder.calls.Load() != 21 || other.calls.Load() != 0 {
		t.Errorf("calls: holder %d, other %d; want all 21 on the holder", holder.calls.Load(), other.calls.Load())
	}
	for range 30 {
		h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi"})
	}
	if other.calls.Load() == 0 {
		t.Error("new conversations all went to one deployment: the pin leaked")
	}
}

// TestResponseIDsBoundToKey: a response ID works only for the key it was given to. Another
// key, an altered ID or a provider's raw ID is refused before any provider call or
// charge, for previous_response_id and for reading or deleting the response.
func TestResponseIDsBoundToKey(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	_, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi"})
	id := responseIDOf(t, body)
	altered := id[:len(id)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(id, "AA")]

	h.caller.KeyID, h.caller.Budgets = "key2", []store.BudgetRef{{Scope: store.BudgetKey, ID: "key2"}}
	limit := 100.0
	h.st.SetLimit(store.BudgetRef{Scope: store.BudgetKey, ID: "key2"}, &limit, nil, "", nil)
	calls := up.calls.Load()
	for name, prev := range map[string]string{"another key's": id, "an altered": altered, "a provider's raw": "resp_1"} {
		resp, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi", "previous_response_id": prev})
		if _, param, _, _ := errorOf(t, body); resp.StatusCode != 400 || param != "previous_response_id" {
			t.Errorf("%s ID as previous_response_id: %d %s, want 400 naming previous_response_id", name, resp.StatusCode, body)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if resp, body := h.send(m, "/v1/responses/"+prev); resp.StatusCode != 404 {
				t.Errorf("%s %s ID: %d %s, want 404", m, name, resp.StatusCode, body)
			}
		}
	}
	if up.calls.Load() != calls {
		t.Error("a refused ID reached the provider")
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key2"); b.Spend != 0 || math.Abs(b.Reserved) > 1e-12 {
		t.Errorf("key2 spend %v reserved %v after refusals, want nothing", b.Spend, b.Reserved)
	}
	h.caller.KeyID = "key1"
	if resp, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi", "previous_response_id": id}); resp.StatusCode != 200 {
		t.Errorf("the owner's follow-up: %d %s", resp.StatusCode, body)
	}
}

// TestStoredResponse: GET and DELETE /v1/responses/{id} and its input_items reach the
// deployment that made the response, with the provider's ID in the path and the caller's
// query, and answer with the caller's ID. Azure's go under /openai/responses with its
// api-version.
func TestStoredResponse(t *testing.T) {
	up := newFakeOpenAI(t)
	az := llm.ModelConfig{ModelName: "az", LiteLLMParams: map[string]any{"model": "azure/my-deploy", "api_base": up.URL, "api_key": "az-secret"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), az}})
	_, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "hi"})
	id := responseIDOf(t, body)

	resp, got := h.get("/v1/responses/" + id + "?include[]=message.output_text.logprobs&stream=true")
	if resp.StatusCode != 200 || responseIDOf(t, got) != id || asProvider(got, "resp_1") != up.responsesAnswer("upstream-gpt", "completed") {
		t.Errorf("GET: %d %s, want the provider's answer under the caller's ID", resp.StatusCode, got)
	}
	if want := "/responses/resp_1?include%5B%5D=message.output_text.logprobs"; up.lastPath != want || up.lastAuth != "Bearer sk-up" {
		t.Errorf("provider got %s (auth %q), want %s with the deployment's key and no stream", up.lastPath, up.lastAuth, want)
	}
	resp, got = h.get("/responses/" + id + "/input_items?limit=5")
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"first_id":"msg_0"`) || up.lastPath != "/responses/resp_1/input_items?limit=5" {
		t.Errorf("input_items: %d %s (provider path %s)", resp.StatusCode, got, up.lastPath)
	}
	resp, got = h.send(http.MethodDelete, "/v1/responses/"+id)
	var del struct {
		ID      string
		Deleted bool
	}
	if resp.StatusCode != 200 || json.Unmarshal(got, &del) != nil || del.ID != id || !del.Deleted {
		t.Errorf("DELETE: %d %s, want deleted under the caller's ID", resp.StatusCode, got)
	}

	_, body = h.post("/v1/responses", map[string]any{"model": "az", "input": "hi"})
	if resp, got := h.get("/v1/responses/" + responseIDOf(t, body)); resp.StatusCode != 200 ||
		up.lastPath != "/openai/responses/resp_1?api-version=2025-04-01-preview" || up.lastAuth != "az-secret" {
		t.Errorf("Azure GET: %d %s; provider got %s (auth %q)", resp.StatusCode, got, up.lastPath, up.lastAuth)
	}
	for _, r := range [][2]string{{http.MethodPost, "/v1/responses/" + id + "/cancel"}, {http.MethodPut, "/v1/responses/" + id}} {
		if resp, got := h.send(r[0], r[1]); resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q %s, want a JSON 404", r[0], r[1], resp.StatusCode, resp.Header.Get("Content-Type"), got)
		}
	}
	up.respID = "resp_gone"
	if resp, got := h.get("/v1/responses/" + id); resp.StatusCode != 404 || !strings.Contains(string(got), "not found") {
		t.Errorf("GET of a response the provider no longer has: %d %s, want its 404", resp.StatusCode, got)
	}
}
