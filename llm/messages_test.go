package llm_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
// clients read: an unknown model, a missing field, a refused field, an exhausted budget.
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

// toolyOpenAI answers every chat completion with some text and a get_weather tool call
// (40 prompt and 12 completion tokens), streamed when asked, and keeps the last body.
func toolyOpenAI(t *testing.T) (url string, last func() map[string]any) {
	var mu sync.Mutex
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		body = b
		mu.Unlock()
		if b["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, c := range []string{
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"Let me look"},"finish_reason":null}]}`,
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-9","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
				`{"id":"chatcmpl-9","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":12,"total_tokens":52}}`,
				`[DONE]`,
			} {
				fmt.Fprintf(w, "data: %s\n\n", c)
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Let me look","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":40,"completion_tokens":12,"total_tokens":52}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return body
	}
}

// conversation is a Messages API request with everything translation handles: a system
// prompt in blocks, an image, a system message mid-conversation (as Claude Code sends), an
// earlier tool call and its result, tools and a forced tool choice.
func conversation(model string, stream bool) map[string]any {
	return map[string]any{"model": model, "max_tokens": 300, "stream": stream, "stop_sequences": []any{"END"},
		"system": []any{map[string]any{"type": "text", "text": "be brief"}},
		"messages": []any{
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "weather?"},
				map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": "AAAA"}}}},
			map[string]any{"role": "system", "content": "stay on topic"},
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "text", "text": "checking"},
				map[string]any{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": map[string]any{"city": "Paris"}}}},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
				map[string]any{"type": "text", "text": "and tomorrow?"}}},
		},
		"tools":       []any{map[string]any{"name": "get_weather", "description": "d", "input_schema": map[string]any{"type": "object"}}},
		"tool_choice": map[string]any{"type": "tool", "name": "get_weather"},
	}
}

// TestMessagesTranslatedToChat: /v1/messages on a model served by an OpenAI-compatible
// deployment is sent as the equivalent chat completion, and the answer, plain or streamed,
// comes back as a Messages API answer with its tool call; the chat usage is charged.
func TestMessagesTranslatedToChat(t *testing.T) {
	url, last := toolyOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", url, map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002})}})

	resp, body := h.post("/v1/messages", conversation("gpt", false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	wantSent := `{"max_tokens":300,"messages":[{"content":"be brief","role":"system"},` +
		`{"content":[{"text":"weather?","type":"text"},{"image_url":{"url":"data:image/png;base64,AAAA"},"type":"image_url"}],"role":"user"},` +
		`{"content":"stay on topic","role":"system"},` +
		`{"content":"checking","role":"assistant","tool_calls":[{"function":{"arguments":"{\"city\":\"Paris\"}","name":"get_weather"},"id":"toolu_1","type":"function"}]},` +
		`{"content":"sunny","role":"tool","tool_call_id":"toolu_1"},` +
		`{"content":[{"text":"and tomorrow?","type":"text"}],"role":"user"}],` +
		`"model":"upstream-gpt","stop":["END"],"tool_choice":{"function":{"name":"get_weather"},"type":"function"},` +
		`"tools":[{"function":{"description":"d","name":"get_weather","parameters":{"type":"object"}},"type":"function"}]}`
	if got, _ := json.Marshal(last()); string(got) != wantSent {
		t.Errorf("chat completion sent:\n%s\nwant\n%s", got, wantSent)
	}
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	wantMsg := `{"content":[{"text":"Let me look","type":"text"},{"id":"call_1","input":{"city":"Paris"},"name":"get_weather","type":"tool_use"}],` +
		`"id":"msg_9","model":"gpt","role":"assistant","stop_reason":"tool_use","stop_sequence":null,"type":"message","usage":{"input_tokens":40,"output_tokens":12}}`
	if got, _ := json.Marshal(msg); string(got) != wantMsg {
		t.Errorf("answer:\n%s\nwant\n%s", got, wantMsg)
	}

	resp, body = h.post("/v1/messages", conversation("gpt", true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if so, _ := last()["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream sent without stream_options.include_usage: %v", last())
	}
	var events []string
	for _, ev := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		name, data, _ := strings.Cut(ev, "\ndata: ")
		events = append(events, strings.TrimPrefix(name, "event: ")+" "+data)
	}
	want := []string{
		`message_start {"message":{"content":[],"id":"msg_toolgate","model":"gpt","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"input_tokens":0,"output_tokens":0}},"type":"message_start"}`,
		`content_block_start {"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}`,
		`content_block_delta {"delta":{"text":"Let me look","type":"text_delta"},"index":0,"type":"content_block_delta"}`,
		`content_block_stop {"index":0,"type":"content_block_stop"}`,
		`content_block_start {"content_block":{"id":"call_1","input":{},"name":"get_weather","type":"tool_use"},"index":1,"type":"content_block_start"}`,
		`content_block_delta {"delta":{"partial_json":"{\"city\":","type":"input_json_delta"},"index":1,"type":"content_block_delta"}`,
		`content_block_delta {"delta":{"partial_json":"\"Paris\"}","type":"input_json_delta"},"index":1,"type":"content_block_delta"}`,
		`content_block_stop {"index":1,"type":"content_block_stop"}`,
		`message_delta {"delta":{"stop_reason":"tool_use","stop_sequence":null},"type":"message_delta","usage":{"input_tokens":40,"output_tokens":12}}`,
		`message_stop {"type":"message_stop"}`,
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); math.Abs(b.Spend-2*(40*0.001+12*0.002)) > 1e-9 || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want two calls of 40×0.001 + 12×0.002", b.Spend, b.Reserved)
	}
}

// TestMessagesTranslationRefusals: what a chat completion cannot express is refused with a
// 400 naming it, before anything is sent or reserved.
func TestMessagesTranslationRefusals(t *testing.T) {
	url, last := toolyOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", url, nil)}})
	for _, tc := range []struct {
		name, field string
		body        map[string]any
	}{
		{"server tool", "web_search", map[string]any{"model": "gpt", "max_tokens": 10, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			"tools": []any{map[string]any{"type": "web_search_20250305", "name": "web_search"}}}},
		{"tool role in messages", "role", map[string]any{"model": "gpt", "max_tokens": 10, "messages": []any{map[string]any{"role": "tool", "content": "hi"}}}},
		{"document block", "document", map[string]any{"model": "gpt", "max_tokens": 10, "messages": []any{map[string]any{"role": "user",
			"content": []any{map[string]any{"type": "document", "source": map[string]any{"type": "text", "data": "x"}}}}}}},
		{"bad tool_choice", "tool_choice", map[string]any{"model": "gpt", "max_tokens": 10, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			"tool_choice": map[string]any{"type": "sometimes"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.post("/v1/messages", tc.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if typ, msg := anthropicErrorOf(t, body); typ != "invalid_request_error" || !strings.Contains(msg, tc.field) {
				t.Errorf("error %q %q, want invalid_request_error naming %q", typ, msg, tc.field)
			}
		})
	}
	if last() != nil {
		t.Errorf("a refused request reached the provider: %v", last())
	}
}

// TestMessagesTranslatedStreamBreaks: a chat stream that turns unreadable mid-way ends the
// Messages API stream with an error event in Anthropic's shape, and the call is logged as
// a failure.
func TestMessagesTranslatedStreamBreaks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"},\"finish_reason\":null}]}\n\n")
		fmt.Fprint(w, "data: {not json\n\n")
	}))
	defer srv.Close()
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", srv.URL, nil)}})
	resp, body := h.post("/v1/messages", map[string]any{"model": "gpt", "max_tokens": 10, "stream": true,
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	got := string(body)
	if resp.StatusCode != 200 || !strings.Contains(got, `"text":"partial"`) ||
		!strings.Contains(got, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":") || strings.Contains(got, "message_stop") {
		t.Fatalf("status %d, stream:\n%s\nwant the partial text, then an Anthropic error event and no message_stop", resp.StatusCode, got)
	}
	h.flush()
	if logs := h.logs(); len(logs) != 1 || logs[0].Status != "failure" {
		t.Errorf("spend log %+v, want one failure row", logs)
	}
}

// TestTruncatedStreams: a provider that goes away mid-stream, before its end marker, is a
// failure the client is told about (an error event, no [DONE] or message_stop), and the
// call is logged as failed and charged for what was streamed. An OpenAI-compatible stream
// that ends without [DONE] after its finish_reason is a normal end.
func TestTruncatedStreams(t *testing.T) {
	const (
		oaChunk  = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial answer\"},\"finish_reason\":null}]}\n\n"
		oaFinish = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
		anStart  = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n"
		anDelta  = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"partial answer\"}}\n\n"
		anError  = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	)
	for _, tc := range []struct {
		name, provider, sent, path string
		ok                         bool
		want                       string
	}{
		{"openai cut", "openai", oaChunk, "/v1/chat/completions", false, `data: {"error":{"message":"the provider's stream ended before its end"`},
		{"openai without [DONE]", "openai", oaChunk + oaFinish, "/v1/chat/completions", true, "data: [DONE]\n\n"},
		{"anthropic cut", "anthropic", anStart + anDelta, "/v1/messages", false, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"},
		{"anthropic cut, as chat", "anthropic", anStart + anDelta, "/v1/chat/completions", false, `data: {"error":{"message":"the provider's stream ended before its end"`},
		{"anthropic error event", "anthropic", anStart + anDelta + anError, "/v1/messages", false, `"message":"Overloaded"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tc.sent)
			}))
			defer srv.Close()
			mc := model("m", srv.URL, nil)
			if tc.provider == "anthropic" {
				mc.LiteLLMParams["model"] = "anthropic/claude-x"
			}
			h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc}})
			resp, body := h.post(tc.path, map[string]any{"model": "m", "max_tokens": 50, "stream": true,
				"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
			got := string(body)
			if resp.StatusCode != 200 || !strings.Contains(got, "partial answer") || !strings.Contains(got, tc.want) {
				t.Fatalf("status %d, stream:\n%s\nwant the partial answer and %q", resp.StatusCode, got, tc.want)
			}
			if !tc.ok && (strings.Contains(got, "[DONE]") || strings.Contains(got, "message_stop")) {
				t.Errorf("a cut stream was ended as if complete:\n%s", got)
			}
			h.flush()
			logs := h.logs()
			wantStatus := map[bool]string{true: "success", false: "failure"}[tc.ok]
			if len(logs) != 1 || logs[0].Status != wantStatus || logs[0].CompletionTokens == 0 {
				t.Errorf("spend log %+v, want one %s row charged for the streamed text", logs, wantStatus)
			}
		})
	}
}

// TestCountTokens: /v1/messages/count_tokens asks the provider for an anthropic/* model
// (the request as sent, model renamed, the deployment's key) and estimates for others;
// nothing is charged, and the key's model list applies.
func TestCountTokens(t *testing.T) {
	var got map[string]any
	var gotKey, gotPath string
	an := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		gotKey, gotPath = r.Header.Get("x-api-key"), r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"input_tokens":42}`)
	}))
	defer an.Close()
	oa := newFakeOpenAI(t)
	mc := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{mc, model("gpt", oa.URL, nil)}})
	count := map[string]any{"model": "claude", "system": "be brief", "messages": []any{map[string]any{"role": "user", "content": "hello there"}}}

	resp, body := h.post("/v1/messages/count_tokens", count)
	if resp.StatusCode != 200 || string(body) != `{"input_tokens":42}` {
		t.Fatalf("anthropic count: %d %s, want the provider's answer", resp.StatusCode, body)
	}
	if gotPath != "/v1/messages/count_tokens" || gotKey != "sk-ant" || got["model"] != "claude-test" || got["system"] != "be brief" {
		t.Errorf("provider got %s with key %q: %v", gotPath, gotKey, got)
	}

	count["model"] = "gpt"
	resp, body = h.post("/v1/messages/count_tokens", count)
	var est struct {
		InputTokens int64 `json:"input_tokens"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &est) != nil || est.InputTokens < 5 {
		t.Fatalf("estimated count: %d %s, want input_tokens from the request's size", resp.StatusCode, body)
	}
	if oa.calls.Load() != 0 {
		t.Errorf("an estimate called the provider")
	}

	h.caller.Models = []string{"gpt"}
	count["model"] = "claude"
	if resp, body := h.post("/v1/messages/count_tokens", count); resp.StatusCode != 401 {
		t.Errorf("a model the key may not use: %d %s, want 401", resp.StatusCode, body)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); b.Spend != 0 || b.Reserved != 0 || len(h.logs()) != 0 {
		t.Errorf("counting was charged: spend %v, reserved %v, %d spend rows", b.Spend, b.Reserved, len(h.logs()))
	}
}

// TestMessagesFallbackAcrossFormats: /v1/messages on an Anthropic model whose provider fails
// falls back to an OpenAI-compatible model, translated, and the other way round.
func TestMessagesFallbackAcrossFormats(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"api_error","message":"down"}}`)
	}))
	defer broken.Close()
	an := newFakeAnthropic(t)
	oa := newFakeOpenAI(t)
	zero := 0
	models := []llm.ModelConfig{
		{ModelName: "claude-down", LiteLLMParams: map[string]any{"model": "anthropic/claude-x", "api_base": broken.URL, "api_key": "k"}},
		{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"}},
		model("gpt-down", broken.URL, nil),
		model("gpt", oa.URL, nil),
	}
	h := newHarness(t, harnessOpts{models: models, router: llm.RouterSettings{NumRetries: &zero,
		Fallbacks: []map[string][]string{{"claude-down": {"gpt"}}, {"gpt-down": {"claude"}}}}})
	for _, tc := range []struct{ model, want string }{
		{"claude-down", `"text":"hello there"`}, // the fake OpenAI's answer, translated
		{"gpt-down", `"text":"Bonjour"`},        // the fake Anthropic's, passed through
	} {
		resp, body := h.post("/v1/messages", map[string]any{"model": tc.model, "max_tokens": 20,
			"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
		if resp.StatusCode != 200 || !strings.Contains(string(body), tc.want) || !strings.Contains(string(body), `"type":"message"`) {
			t.Errorf("%s: %d %s, want a Messages API answer containing %s", tc.model, resp.StatusCode, body, tc.want)
		}
	}
}

// TestMessagesMetadata: a Messages API call's metadata.user_id reaches Anthropic (which
// uses it against abuse) and nothing else of the metadata does, whether it came as an
// object or as a JSON string; it is not an end user; a translated call sends no metadata.
func TestMessagesMetadata(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta any
	}{
		{"object", map[string]any{"user_id": "user_abc_session_1", "tags": []any{"team-a"}}},
		{"JSON string", `{"user_id":"user_abc_session_1","tags":["team-a"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, an := messagesHarness(t)
			if resp, body := h.post("/v1/messages", messagesBody("metadata", tc.meta)); resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got, _ := json.Marshal(an.body()["metadata"]); string(got) != `{"user_id":"user_abc_session_1"}` {
				t.Errorf("Anthropic got metadata %s, want only the user_id", got)
			}
			h.flush()
			if logs := h.logs(); len(logs) != 1 || logs[0].EndUser != "" || strings.Join(logs[0].Tags, ",") != "team-a" {
				t.Errorf("spend log %+v, want no end user and the tag team-a", logs[0])
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		h, an := messagesHarness(t)
		if resp, body := h.post("/v1/messages", messagesBody("metadata", map[string]any{"tags": []any{"x"}})); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if m, ok := an.body()["metadata"]; ok {
			t.Errorf("Anthropic got metadata %v, want none", m)
		}
	})
	t.Run("translated", func(t *testing.T) {
		oa := newFakeOpenAI(t)
		h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", oa.URL, nil)}})
		if resp, body := h.post("/v1/messages", messagesBody("model", "gpt", "tools", nil, "metadata", map[string]any{"user_id": "u1"})); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		sent := oa.body()
		if _, ok := sent["metadata"]; ok || sent["user"] != nil {
			t.Errorf("translated call sent metadata %v / user %v, want neither", sent["metadata"], sent["user"])
		}
	})
}

// TestMessagesToolResultImages: images a tool returned (Claude Code's screenshots and
// image reads) reach a translated model in the user message after the tool messages, each
// after a line naming its tool call, since a chat completion's tool message carries text
// only; a result that is only an image gets a line pointing there.
func TestMessagesToolResultImages(t *testing.T) {
	url, last := toolyOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", url, nil)}})
	img := func(data string) map[string]any {
		return map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": data}}
	}
	req := map[string]any{"model": "gpt", "max_tokens": 100, "messages": []any{
		map[string]any{"role": "user", "content": "look"},
		map[string]any{"role": "assistant", "content": []any{
			map[string]any{"type": "tool_use", "id": "toolu_a", "name": "screenshot", "input": map[string]any{}},
			map[string]any{"type": "tool_use", "id": "toolu_b", "name": "read", "input": map[string]any{}}}},
		map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_a", "content": []any{map[string]any{"type": "text", "text": "the screen"}, img("AAAA")}},
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_b", "content": []any{img("BBBB")}},
			map[string]any{"type": "text", "text": "what do you see?"}}},
	}}
	if resp, body := h.post("/v1/messages", req); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got, _ := json.Marshal(last()["messages"])
	want := `[{"content":"look","role":"user"},` +
		`{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{}","name":"screenshot"},"id":"toolu_a","type":"function"},{"function":{"arguments":"{}","name":"read"},"id":"toolu_b","type":"function"}]},` +
		`{"content":"the screen","role":"tool","tool_call_id":"toolu_a"},` +
		`{"content":"(the result is the image in the next message)","role":"tool","tool_call_id":"toolu_b"},` +
		`{"content":[{"text":"Image returned by tool call toolu_a:","type":"text"},{"image_url":{"url":"data:image/png;base64,AAAA"},"type":"image_url"},` +
		`{"text":"Image returned by tool call toolu_b:","type":"text"},{"image_url":{"url":"data:image/png;base64,BBBB"},"type":"image_url"},` +
		`{"text":"what do you see?","type":"text"}],"role":"user"}]`
	if string(got) != want {
		t.Errorf("messages sent:\n%s\nwant\n%s", got, want)
	}
}
