package llm_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// searchPrice is a model_info search_context_cost_per_query.
var searchPrice = map[string]any{"search_context_size_low": 0.01, "search_context_size_medium": 0.02, "search_context_size_high": 0.05}

// TestWebSearchCharged: web searches the provider runs are charged at the model's
// search_context_cost_per_query on top of the tokens: Anthropic's server_tool_use count
// (plain and streamed), the Responses API's web_search_call items at the tool's
// search_context_size, and one search for a chat completion with web_search_options.
func TestWebSearchCharged(t *testing.T) {
	an := newFakeAnthropic(t)
	an.searches = 3
	oa := newFakeOpenAI(t)
	oa.searchCalls = 2
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 1000, "search_context_cost_per_query": searchPrice}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{claude, model("gpt", oa.URL, map[string]any{"search_context_cost_per_query": searchPrice})}})
	webSearch := []any{map[string]any{"type": "web_search_20250305", "name": "web_search", "max_uses": 4}}

	// 20×0.001 + 30×0.002 = 0.08 in tokens, and 3 searches at 0.02 (Anthropic's have no size).
	for _, stream := range []bool{false, true} {
		if resp, body := h.post("/v1/messages", messagesBody("tools", webSearch, "stream", stream)); resp.StatusCode != 200 {
			t.Fatalf("messages (stream %v): %d %s", stream, resp.StatusCode, body)
		}
	}
	// 12×0.5 + 8×0.125 = 7 in tokens, and 2 searches at the low size.
	if resp, body := h.post("/v1/responses", map[string]any{"model": "gpt", "input": "news?",
		"tools": []any{map[string]any{"type": "web_search", "search_context_size": "low"}}}); resp.StatusCode != 200 {
		t.Fatalf("responses: %d %s", resp.StatusCode, body)
	}
	// 7 in tokens and one search at the high size.
	if resp, body := h.post("/v1/chat/completions", chat("gpt", "web_search_options", map[string]any{"search_context_size": "high"})); resp.StatusCode != 200 {
		t.Fatalf("chat: %d %s", resp.StatusCode, body)
	}
	h.flush()
	logs := h.logs() // newest first
	want := []float64{7 + 0.05, 7 + 2*0.01, 0.08 + 3*0.02, 0.08 + 3*0.02}
	if len(logs) != len(want) {
		t.Fatalf("got %d spend rows, want %d", len(logs), len(want))
	}
	total := 0.0
	for i, l := range logs {
		if !approx(l.Spend, want[i]) {
			t.Errorf("%s call charged %v, want %v", l.CallType, l.Spend, want[i])
		}
		total += want[i]
	}
	var meta struct {
		Searches int64 `json:"web_search_requests"`
	}
	if err := json.Unmarshal(logs[3].Metadata, &meta); err != nil || meta.Searches != 3 {
		t.Errorf("spend row metadata %s, want web_search_requests 3", logs[3].Metadata)
	}
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, total) || b.Reserved != 0 {
		t.Errorf("key spend %v reserved %v, want %v and nothing held", b.Spend, b.Reserved, total)
	}
}

// TestWebSearchReserved: a call's reservation covers the searches it may run (max_uses,
// else 5), so a budget that fits its tokens but not its searches refuses it before the
// provider runs any.
func TestWebSearchReserved(t *testing.T) {
	an := newFakeAnthropic(t)
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 1000, "search_context_cost_per_query": searchPrice}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{claude}})
	// Tokens reserve about 0.65 (a short prompt and 300 output tokens at 0.002); ten searches
	// at 0.02 add 0.2.
	h.setKeyLimit(0.75)
	tools := []any{map[string]any{"type": "web_search_20250305", "name": "web_search", "max_uses": 10}}
	resp, body := h.post("/v1/messages", messagesBody("tools", tools))
	if typ, _ := anthropicErrorOf(t, body); resp.StatusCode != 400 || typ != "budget_exceeded" {
		t.Fatalf("with 10 searches: %d %s, want budget_exceeded", resp.StatusCode, body)
	}
	if an.body() != nil {
		t.Error("the refused call reached the provider")
	}
	tools[0].(map[string]any)["max_uses"] = 1
	if resp, body := h.post("/v1/messages", messagesBody("tools", tools)); resp.StatusCode != 200 {
		t.Errorf("with 1 search: %d %s, want it admitted", resp.StatusCode, body)
	}
}

// TestUnpricedSearchesWarned: web searches on a model with no search price cost nothing,
// and the log says so, once per deployment, naming the setting that prices them.
func TestUnpricedSearchesWarned(t *testing.T) {
	an := newFakeAnthropic(t)
	an.searches = 2
	var logs lockedBuffer
	claude := llm.ModelConfig{ModelName: "claude", LiteLLMParams: map[string]any{"model": "anthropic/claude-test", "api_base": an.URL, "api_key": "sk-ant"},
		ModelInfo: map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{claude}, logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tools := []any{map[string]any{"type": "web_search_20250305", "name": "web_search"}}
	for range 2 {
		if resp, body := h.post("/v1/messages", messagesBody("tools", tools)); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if n := strings.Count(logs.String(), "search_context_cost_per_query"); n != 1 {
		t.Errorf("warnings naming search_context_cost_per_query: %d, want 1:\n%s", n, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines and the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHostedToolsCharged: the Responses API's file searches are charged per call at
// file_search_cost_per_1k_calls, and its code interpreter per container (however many
// calls ran in it) at the provider's container price from the map, and the spend row
// counts both; a model with no file search price charges nothing for them and says so.
func TestHostedToolsCharged(t *testing.T) {
	oa := newFakeOpenAI(t)
	oa.extraItems = `{"type":"file_search_call","id":"fs_1","status":"completed","queries":["q"]},` +
		`{"type":"file_search_call","id":"fs_2","status":"completed","queries":["q"]},` +
		`{"type":"code_interpreter_call","id":"ci_1","status":"completed","container_id":"cntr_1","code":"1+1"},` +
		`{"type":"code_interpreter_call","id":"ci_2","status":"completed","container_id":"cntr_1","code":"2+2"},` +
		`{"type":"code_interpreter_call","id":"ci_3","status":"completed","container_id":"cntr_2","code":"3+3"},`
	var logs lockedBuffer
	h := newHarness(t, harnessOpts{logger: slog.New(slog.NewTextHandler(&logs, nil)), models: []llm.ModelConfig{
		model("gpt", oa.URL, map[string]any{"file_search_cost_per_1k_calls": 2.5}), model("gpt-nofs", oa.URL, nil)}})
	tools := []any{map[string]any{"type": "file_search", "vector_store_ids": []any{"vs_1"}}, map[string]any{"type": "code_interpreter", "container": map[string]any{"type": "auto"}}}
	for _, m := range []string{"gpt", "gpt-nofs"} {
		if resp, body := h.post("/v1/responses", map[string]any{"model": m, "input": "hi", "tools": tools}); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", m, resp.StatusCode, body)
		}
	}
	h.flush()
	logRows := h.logs() // newest first
	// 7 in tokens, 2 file searches at 2.5 a thousand, 2 containers at the map's 0.03.
	if !approx(logRows[1].Spend, 7+2*0.0025+2*0.03) || !approx(logRows[0].Spend, 7+2*0.03) {
		t.Errorf("charged %v and %v, want %v and %v", logRows[1].Spend, logRows[0].Spend, 7+2*0.0025+2*0.03, 7+2*0.03)
	}
	var meta struct {
		FileSearches int64 `json:"file_search_calls"`
		Sessions     int64 `json:"code_interpreter_sessions"`
	}
	if err := json.Unmarshal(logRows[1].Metadata, &meta); err != nil || meta.FileSearches != 2 || meta.Sessions != 2 {
		t.Errorf("spend row metadata %s, want 2 file searches and 2 containers", logRows[1].Metadata)
	}
	if n := strings.Count(logs.String(), "file_search_cost_per_1k_calls"); n != 1 {
		t.Errorf("warnings naming file_search_cost_per_1k_calls: %d, want 1:\n%s", n, logs.String())
	}
}
