package llm_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// messagesHarness serves "claude" on the fake Anthropic server (0.001 in, 0.002 out per
// token) and "gpt" on a fake OpenAI one.
func messagesHarness(t *testing.T) (*harness, *fakeAnthropic) {
	an := newFakeAnthropic(t)
	oa := newFakeOpenAI(t)
	mc := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 1000}}
	return newHarness(t, harnessOpts{models: []llm.ModelConfig{mc, model("gpt", oa.URL, nil)}}), an
}

func messagesBody(extra ...any) map[string]any {
	b := map[string]any{"model": "claude", "max_tokens": 300, "system": "be brief",
		"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "weather?"}}}},
		"tools":    []any{map[string]any{"name": "get_weather", "input_schema": map[string]any{"type": "object"}}}}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

// anthropicErrorOf decodes an Anthropic-shaped error body.
func anthropicErrorOf(t *testing.T, body []byte) (typ, msg string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" {
		t.Fatalf("body %s is not an Anthropic error (%v)", body, err)
	}
	return e.Error.Type, e.Error.Message
}

// TestMessagesPassThrough: /v1/messages sends an Anthropic request on in Anthropic's
// format (only the model renamed, the caller's anthropic-version and anthropic-beta kept,
// the deployment's key instead of the caller's), returns the answer byte for byte, and
// charges the usage it reports.
func TestMessagesPassThrough(t *testing.T) {
	h, an := messagesHarness(t)
	resp, body := h.post("/v1/messages", messagesBody(), "anthropic-version", "2023-06-01",
		"anthropic-beta", "prompt-caching-2024-07-31", "x-api-key", "sk-caller")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	want := `{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Bonjour"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"output_tokens":30}}`
	if string(body) != want {
		t.Errorf("answer %s, want the provider's %s", body, want)
	}
	sent := an.body()
	tools, _ := sent["tools"].([]any)
	if sent["model"] != "claude-test" || sent["system"] != "be brief" || sent["max_tokens"] != 300.0 || len(tools) != 1 ||
		tools[0].(map[string]any)["input_schema"] == nil {
		t.Errorf("provider got %v, want the request as sent with the deployment's model", sent)
	}
	if an.lastKey != "sk-ant" || an.lastHdr.Get("anthropic-beta") != "prompt-caching-2024-07-31" || an.lastHdr.Get("anthropic-version") != "2023-06-01" {
		t.Errorf("provider headers: x-api-key %q, anthropic-beta %q, anthropic-version %q", an.lastKey,
			an.lastHdr.Get("anthropic-beta"), an.lastHdr.Get("anthropic-version"))
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); math.Abs(b.Spend-0.08) > 1e-9 || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want 20×0.001 + 30×0.002 = 0.08 and nothing held", b.Spend, b.Reserved)
	}
	logs := h.logs()
	if len(logs) != 1 || logs[0].CallType != store.CallAnthropicMessages || logs[0].Model != "claude" ||
		logs[0].PromptTokens != 20 || logs[0].CompletionTokens != 30 || logs[0].Status != "success" {
		t.Errorf("spend log %+v, want one anthropic_messages row with the provider's usage", logs)
	}
}

// TestMessagesStreamPassThrough: a streamed answer reaches the client event for event,
// with Anthropic's event names and no OpenAI [DONE], and the usage of message_start and
// message_delta is charged.
func TestMessagesStreamPassThrough(t *testing.T) {
	h, _ := messagesHarness(t)
	resp, body := h.post("/v1/messages", messagesBody("stream", true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	got := string(body)
	for _, w := range []string{
		"event: message_start\ndata: {\"type\":\"message_start\",",
		"event: ping\ndata: {\"type\":\"ping\"}\n\n",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
		"event: message_delta\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("stream lacks %q:\n%s", w, got)
		}
	}
	if !strings.HasSuffix(got, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") || strings.Contains(got, "[DONE]") {
		t.Errorf("stream should end with message_stop and carry no [DONE]:\n%s", got)
	}
	if n := strings.Count(got, "event: "); n != 11 {
		t.Errorf("%d events, want the provider's 11", n)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); math.Abs(b.Spend-0.08) > 1e-9 || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want 0.08 from the stream's usage", b.Spend, b.Reserved)
	}
}

// TestMessagesRefusals: errors on /v1/messages come in Anthropic's shape, which Messages API
// clients read: a model with no Anthropic deployment, a missing field, an exhausted budget.
func TestMessagesRefusals(t *testing.T) {
	h, an := messagesHarness(t)
	for _, tc := range []struct {
		name    string
		body    any
		setup   func()
		status  int
		typ     string
		message string
	}{
		{name: "openai model", body: messagesBody("model", "gpt"), status: 400, typ: "invalid_request_error", message: "anthropic/*"},
		{name: "unknown model", body: messagesBody("model", "nope"), status: 400, typ: "invalid_request_error", message: "nope"},
		{name: "no messages", body: map[string]any{"model": "claude", "max_tokens": 10}, status: 400, typ: "invalid_request_error", message: "messages"},
		{name: "not JSON", body: "{", status: 400, typ: "invalid_request_error"},
		{name: "api_base in body", body: messagesBody("api_base", "http://evil"), status: 400, typ: "invalid_request_error", message: "api_base"},
		// 300 tokens of output allowance alone cost 0.6: over a 0.5 budget.
		{name: "budget", body: messagesBody(), setup: func() { h.setKeyLimit(0.5) }, status: 400, typ: "budget_exceeded", message: "Budget has been exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			resp, body := h.post("/v1/messages", tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			typ, msg := anthropicErrorOf(t, body)
			if typ != tc.typ || !strings.Contains(msg, tc.message) {
				t.Errorf("error %q %q, want type %q and a message naming %q", typ, msg, tc.typ, tc.message)
			}
		})
	}
	if an.body() != nil {
		t.Errorf("refused calls reached the provider: %v", an.body())
	}
	if b := h.budget(store.BudgetKey, "key1"); b.Spend != 0 || b.Reserved != 0 {
		t.Errorf("refused calls charged %v (reserved %v)", b.Spend, b.Reserved)
	}
}
