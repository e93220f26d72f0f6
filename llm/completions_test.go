package llm_test

import (
	"strings"
	"testing"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// TestTextCompletions: /v1/completions (and /completions) passes through to
// OpenAI-compatible deployments, streamed or not, and is charged like a chat: the reported
// usage, else an estimate from the streamed text. best_of completions are generated and
// billed though not returned, so they are reserved. Anthropic models refuse it; a body
// without a prompt is refused.
func TestTextCompletions(t *testing.T) {
	up := newFakeOpenAI(t)
	an := newFakeAnthropic(t)
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil), claude}})

	resp, body := h.post("/v1/completions", map[string]any{"model": "gpt", "prompt": "def add(a, b):", "suffix": "\n", "max_tokens": 20})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"object":"text_completion"`) || !strings.Contains(string(body), `"text":"hello there"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if sent := up.body(); up.lastPath != "/completions" || sent["model"] != "upstream-gpt" || sent["prompt"] != "def add(a, b):" || sent["suffix"] != "\n" {
		t.Errorf("provider got %s %v", up.lastPath, sent)
	}
	resp, body = h.post("/completions", map[string]any{"model": "gpt", "prompt": []any{"a", "b"}, "stream": true})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"text":"abcdefgh4"`) || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("stream: status %d: %s", resp.StatusCode, body)
	}
	up.withUsage = false
	if resp, body := h.post("/v1/completions", map[string]any{"model": "gpt", "prompt": "x", "stream": true}); resp.StatusCode != 200 {
		t.Fatalf("stream without usage: status %d: %s", resp.StatusCode, body)
	}
	h.flush()
	logs := h.logs() // newest first
	if len(logs) != 3 {
		t.Fatalf("%d spend rows, want 3", len(logs))
	}
	for i, l := range logs {
		if l.CallType != store.CallTextCompletion || l.Status != "success" {
			t.Errorf("row %d: %+v, want a successful text_completion", i, l)
		}
	}
	if logs[2].CompletionTokens != 8 || logs[1].CompletionTokens != 8 || !approx(logs[2].Spend, 7) {
		t.Errorf("rows %+v %+v: want the reported 12/8 tokens, costing 7", logs[2], logs[1])
	}
	if logs[0].CompletionTokens == 0 {
		t.Errorf("a stream without usage was charged no output: %+v; want an estimate from its text", logs[0])
	}

	h.setKeyLimit(h.budget(store.BudgetKey, "key1").Spend + 30) // room for 100 tokens × 0.125 twice, not three times
	resp, body = h.post("/v1/completions", map[string]any{"model": "gpt", "prompt": "x", "best_of": 3, "n": 1})
	if typ, _, _, _ := errorOf(t, body); resp.StatusCode != 400 || typ != "budget_exceeded" {
		t.Errorf("best_of 3 over a budget for 2: %d %s, want budget_exceeded", resp.StatusCode, body)
	}
	if resp, body := h.post("/v1/completions", map[string]any{"model": "gpt", "prompt": "x", "best_of": 2}); resp.StatusCode != 200 {
		t.Errorf("best_of 2 within the budget: %d %s", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		body  map[string]any
		param string
	}{
		{map[string]any{"model": "gpt"}, "prompt"},
		{map[string]any{"model": "gpt", "prompt": "x", "best_of": 0}, "best_of"},
		{map[string]any{"model": "claude", "prompt": "x"}, "model"},
	} {
		if resp, body := h.post("/v1/completions", tc.body); resp.StatusCode != 400 || !strings.Contains(string(body), `"param":"`+tc.param+`"`) {
			t.Errorf("%v: %d %s, want 400 naming %s", tc.body, resp.StatusCode, body, tc.param)
		}
	}
}
