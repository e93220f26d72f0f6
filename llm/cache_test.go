package llm_test

import (
	"encoding/json"
	"testing"

	"github.com/toolgate/toolgate/llm"
)

// TestPromptCachePriced: prompt tokens the provider read from or wrote to its prompt cache
// are charged at the model's cache prices, not at the input price: Anthropic's cache reads
// and five-minute and one-hour cache writes (plain and streamed), and OpenAI's cached
// tokens (chat, plain and streamed, and the Responses API). A model without cache prices
// charges them at the input price.
func TestPromptCachePriced(t *testing.T) {
	an := newFakeAnthropic(t)
	an.cacheUsage = `,"cache_read_input_tokens":1000,"cache_creation_input_tokens":100,"cache_creation":{"ephemeral_5m_input_tokens":40,"ephemeral_1h_input_tokens":60}`
	oa := newFakeOpenAI(t)
	oa.cached = 8 // of 12 prompt tokens
	claude := func(name string, info map[string]any) llm.ModelConfig {
		mi := map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 1000}
		for k, v := range info {
			mi[k] = v
		}
		return llm.ModelConfig{ModelName: name, LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"}, ModelInfo: mi}
	}
	cachePrices := map[string]any{"cache_read_input_token_cost": 0.0001, "cache_creation_input_token_cost": 0.00125, "cache_creation_input_token_cost_above_1hr": 0.002}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{
		claude("claude", cachePrices), claude("claude-nocache", nil),
		model("gpt", oa.URL, map[string]any{"cache_read_input_token_cost": 0.05}),
	}})
	// Anthropic: 20 input, 1000 read, 40 + 60 written, 30 output.
	anthropicCost := 20*0.001 + 1000*0.0001 + 40*0.00125 + 60*0.002 + 30*0.002
	// OpenAI: 4 plain and 8 cached of 12 prompt tokens, 8 output.
	openaiCost := 4*0.5 + 8*0.05 + 8*0.125
	calls := []struct {
		path string
		body map[string]any
		want float64
	}{
		{"/v1/messages", messagesBody(), anthropicCost},
		{"/v1/messages", messagesBody("stream", true), anthropicCost},
		{"/v1/messages", messagesBody("model", "claude-nocache"), (20+1000+100)*0.001 + 30*0.002},
		{"/v1/chat/completions", chat("gpt"), openaiCost},
		{"/v1/chat/completions", chat("gpt", "stream", true, "stream_options", map[string]any{"include_usage": true}), openaiCost},
		{"/v1/responses", map[string]any{"model": "gpt", "input": "hi"}, openaiCost},
	}
	for _, c := range calls {
		if resp, body := h.post(c.path, c.body); resp.StatusCode != 200 {
			t.Fatalf("%s %v: %d %s", c.path, c.body["stream"], resp.StatusCode, body)
		}
	}
	h.flush()
	logs := h.logs() // newest first
	if len(logs) != len(calls) {
		t.Fatalf("got %d spend rows, want %d", len(logs), len(calls))
	}
	for i, c := range calls {
		if l := logs[len(logs)-1-i]; !approx(l.Spend, c.want) {
			t.Errorf("%s (model %v, stream %v): charged %v, want %v", c.path, c.body["model"], c.body["stream"], l.Spend, c.want)
		}
	}
	// The spend rows say how much of the prompt the cache served.
	var meta struct {
		CacheRead     int64 `json:"cache_read_input_tokens"`
		CacheCreation int64 `json:"cache_creation_input_tokens"`
	}
	if err := json.Unmarshal(logs[len(logs)-1].Metadata, &meta); err != nil || meta.CacheRead != 1000 || meta.CacheCreation != 100 {
		t.Errorf("Anthropic row metadata %s, want 1000 cache reads and 100 writes", logs[len(logs)-1].Metadata)
	}
	if err := json.Unmarshal(logs[0].Metadata, &meta); err != nil || meta.CacheRead != 8 {
		t.Errorf("OpenAI row metadata %s, want 8 cache reads", logs[0].Metadata)
	}
}

// TestLongPromptAndTierPriced: a call whose prompt passes a long-prompt threshold is
// charged at the long-prompt rates throughout (prompt-cache reads count toward the
// threshold, as providers count them), and a chat completion asking for the priority tier
// at its rates.
func TestLongPromptAndTierPriced(t *testing.T) {
	an := newFakeAnthropic(t)
	an.cacheUsage = `,"cache_read_input_tokens":250000`
	oa := newFakeOpenAI(t)
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 1000,
			"cache_read_input_token_cost": 0.0001, "input_cost_per_token_above_200k_tokens": 0.002,
			"output_cost_per_token_above_200k_tokens": 0.003, "cache_read_input_token_cost_above_200k_tokens": 0.0002}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{claude,
		model("gpt", oa.URL, map[string]any{"input_cost_per_token_priority": 1.0, "output_cost_per_token_priority": 0.25})}})
	if resp, body := h.post("/v1/messages", messagesBody()); resp.StatusCode != 200 {
		t.Fatalf("messages: %d %s", resp.StatusCode, body)
	}
	for _, tier := range []string{"priority", "default"} {
		if resp, body := h.post("/v1/chat/completions", chat("gpt", "service_tier", tier)); resp.StatusCode != 200 {
			t.Fatalf("chat %s: %d %s", tier, resp.StatusCode, body)
		}
	}
	h.flush()
	logs := h.logs() // newest first
	for i, want := range []float64{
		12*0.5 + 8*0.125,                    // default tier
		12*1.0 + 8*0.25,                     // priority
		20*0.002 + 250000*0.0002 + 30*0.003, // 250,020 prompt tokens: all at the long rates
	} {
		if !approx(logs[i].Spend, want) {
			t.Errorf("%s call charged %v, want %v", logs[i].CallType, logs[i].Spend, want)
		}
	}
}
