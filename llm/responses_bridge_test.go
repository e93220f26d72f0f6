package llm_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// bridgeConversation is a Responses API request with everything the translation handles:
// instructions, a user message with an image, an earlier function call and its output, a
// developer message, function tools and a forced tool choice.
func bridgeConversation(stream bool) map[string]any {
	return map[string]any{"model": "claude", "instructions": "be brief", "max_output_tokens": 300, "stream": stream,
		"input": []any{
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "input_text", "text": "weather?"},
				map[string]any{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}}},
			map[string]any{"type": "function_call", "call_id": "toolu_0", "name": "get_weather", "arguments": `{"city":"Oslo"}`},
			map[string]any{"type": "function_call_output", "call_id": "toolu_0", "output": "rain"},
			map[string]any{"type": "reasoning", "summary": []any{}},
			map[string]any{"role": "developer", "content": "stay on topic"},
			map[string]any{"role": "user", "content": "and Paris?"},
		},
		"tools":       []any{map[string]any{"type": "function", "name": "get_weather", "description": "d", "parameters": map[string]any{"type": "object"}}},
		"tool_choice": map[string]any{"type": "function", "name": "get_weather"},
	}
}

// TestResponsesTranslated: the Responses API on an anthropic/* model is sent as the
// equivalent Messages API request (through the chat translation), and the answer comes
// back as a Responses API answer with its message and function call; the usage is charged.
func TestResponsesTranslated(t *testing.T) {
	h, an := messagesHarness(t)
	an.toolCall = true
	resp, body := h.post("/v1/responses", bridgeConversation(false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	sent, _ := json.Marshal(an.body())
	for _, want := range []string{
		`"system":"be brief\nstay on topic"`, `"max_tokens":300`,
		`{"content":[{"text":"weather?","type":"text"},{"source":{"data":"AAAA","media_type":"image/png","type":"base64"},"type":"image"}],"role":"user"}`,
		`{"content":[{"id":"toolu_0","input":{"city":"Oslo"},"name":"get_weather","type":"tool_use"}],"role":"assistant"}`,
		`"tool_use_id":"toolu_0"`, `"content":"rain"`, `"tool_choice":{"name":"get_weather","type":"tool"}`,
		`"tools":[{"description":"d","input_schema":{"type":"object"},"name":"get_weather"}]`,
	} {
		if !strings.Contains(string(sent), want) {
			t.Errorf("Anthropic request lacks %s:\n%s", want, sent)
		}
	}
	var r struct {
		Object, Status, Model string
		Output                []map[string]any
		Usage                 map[string]any
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Object != "response" || r.Status != "completed" || r.Model != "claude" || len(r.Output) != 2 ||
		r.Output[0]["type"] != "message" || r.Output[1]["type"] != "function_call" || r.Output[1]["call_id"] != "toolu_1" ||
		r.Output[1]["name"] != "get_weather" || r.Output[1]["arguments"] != `{"city":"Paris"}` ||
		r.Usage["input_tokens"] != 20.0 || r.Usage["output_tokens"] != 30.0 {
		t.Errorf("answer %s", body)
	}
	if c := r.Output[0]["content"].([]any)[0].(map[string]any); c["type"] != "output_text" || c["text"] != "Checking." {
		t.Errorf("message content %v", c)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); math.Abs(b.Spend-0.08) > 1e-9 || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want 20×0.001 + 30×0.002 = 0.08", b.Spend, b.Reserved)
	}
	if l := h.logs(); len(l) != 1 || l[0].CallType != store.CallResponses {
		t.Errorf("spend log %+v, want one responses row", l)
	}
}

// TestResponsesTranslatedStream: streamed, the translated answer is the Responses API's
// event sequence, numbered, with each item added, its deltas, and done, and the response
// completed with its output and usage.
func TestResponsesTranslatedStream(t *testing.T) {
	h, _ := messagesHarness(t)
	resp, body := h.post("/v1/responses", bridgeConversation(true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var got []string
	var last map[string]any
	for i, ev := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		name, data, _ := strings.Cut(strings.TrimPrefix(ev, "event: "), "\ndata: ")
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil || v["type"] != name || v["sequence_number"] != float64(i) {
			t.Fatalf("event %d %q: %s (%v)", i, name, data, err)
		}
		switch name {
		case "response.output_text.delta", "response.function_call_arguments.delta":
			got = append(got, name+" "+v["delta"].(string))
		case "response.output_item.added", "response.output_item.done":
			item := v["item"].(map[string]any)
			got = append(got, name+" "+item["type"].(string))
		default:
			got = append(got, name)
		}
		last = v
	}
	want := []string{"response.created", "response.in_progress",
		"response.output_item.added message", "response.content_part.added", "response.output_text.delta Let me check",
		"response.output_text.done", "response.content_part.done", "response.output_item.done message",
		"response.output_item.added function_call", `response.function_call_arguments.delta {"city":`,
		`response.function_call_arguments.delta "Paris"}`, "response.function_call_arguments.done", "response.output_item.done function_call",
		"response.completed"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r := last["response"].(map[string]any)
	out := r["output"].([]any)
	if r["status"] != "completed" || len(out) != 2 || out[1].(map[string]any)["arguments"] != `{"city":"Paris"}` ||
		r["usage"].(map[string]any)["output_tokens"] != 30.0 {
		t.Errorf("response.completed: %v", r)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); math.Abs(b.Spend-0.08) > 1e-9 {
		t.Errorf("key spend %v, want 0.08", b.Spend)
	}
}

// TestResponsesMixedGroup: a model with both kinds of deployment answers the Responses API
// from each, natively or translated, always as a Responses API answer.
func TestResponsesMixedGroup(t *testing.T) {
	up := newFakeOpenAI(t)
	an := newFakeAnthropic(t)
	claude := llm.ModelConfig{ModelName: "mix", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{claude, model("mix", up.URL, nil)}})
	for range 30 { // both are picked, but for a chance of 2 in 10⁹
		resp, body := h.post("/v1/responses", map[string]any{"model": "mix", "input": "hi"})
		var r struct{ Object string }
		if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.Object != "response" {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	if up.calls.Load() == 0 || an.body() == nil {
		t.Errorf("calls: OpenAI-compatible %d, Anthropic %v; want both used", up.calls.Load(), an.body() != nil)
	}
}

// TestJSONFormatOnAnthropic: a chat completion's response_format on an Anthropic model
// becomes a forced tool whose input is the answer (as LiteLLM translates it): the content
// is the JSON, plain or streamed, with no tool call and a plain finish; the Responses API's
// text.format takes the same path. With tools of its own it is refused: the forced call
// would shut them out.
func TestJSONFormatOnAnthropic(t *testing.T) {
	h, an := messagesHarness(t)
	schema := map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "integer"}}}
	rf := map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "a", "schema": schema}}
	resp, body := h.post("/v1/chat/completions", chat("claude", "response_format", rf))
	var c struct {
		Choices []struct {
			Message struct {
				Content   string
				ToolCalls []any `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil || c.Choices[0].Message.Content != `{"answer":42}` ||
		len(c.Choices[0].Message.ToolCalls) != 0 || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("chat: %d %s, want the JSON as content and finish stop", resp.StatusCode, body)
	}
	sent, _ := json.Marshal(an.body())
	if !strings.Contains(string(sent), `"tool_choice":{"name":"json_tool_call","type":"tool"}`) || !strings.Contains(string(sent), `"input_schema":{"properties":{"answer"`) {
		t.Errorf("Anthropic request %s, want the schema as a forced json_tool_call", sent)
	}

	resp, body = h.post("/v1/chat/completions", chat("claude", "response_format", rf, "stream", true))
	var content strings.Builder
	finish := ""
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   *string
					ToolCalls []any `json:"tool_calls"`
				}
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil || len(ch.Choices) == 0 {
			continue
		}
		if len(ch.Choices[0].Delta.ToolCalls) > 0 {
			t.Errorf("stream carried a tool call: %s", data)
		}
		if p := ch.Choices[0].Delta.Content; p != nil {
			content.WriteString(*p)
		}
		if f := ch.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if resp.StatusCode != 200 || content.String() != `{"answer":42}` || finish != "stop" {
		t.Errorf("stream: %d content %q finish %q, want the JSON and stop:\n%s", resp.StatusCode, content.String(), finish, body)
	}

	resp, body = h.post("/v1/responses", map[string]any{"model": "claude", "input": "hi",
		"text": map[string]any{"format": map[string]any{"type": "json_schema", "name": "a", "schema": schema}}})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"text":"{\"answer\":42}"`) {
		t.Errorf("responses: %d %s, want the JSON as output text", resp.StatusCode, body)
	}

	resp, body = h.post("/v1/chat/completions", chat("claude", "response_format", rf,
		"tools", []any{map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}))
	if _, param, _, _ := errorOf(t, body); resp.StatusCode != 400 || param != "response_format" {
		t.Errorf("with tools: %d %s, want 400 naming response_format", resp.StatusCode, body)
	}
}
