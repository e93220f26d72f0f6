package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClaude is a Messages API model for Claude Code: asked with the gateway's echo tool on
// offer, it calls it; given the tool's result, it answers with that result; asked anything
// else (Claude Code's side requests), it answers "ok". Every answer is streamed, as Claude
// Code asks, with 100 input and 10 output tokens of usage.
type fakeClaude struct {
	mu        sync.Mutex
	requests  int
	toolUse   int
	results   []string
	apiKeys   []string
	toolNames []string
}

func (f *fakeClaude) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Stream   bool `json:"stream"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Path != "/v1/messages" {
		http.Error(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	var toolResult, echoTool string
	if n := len(body.Messages); n > 0 && body.Messages[n-1].Role == "user" {
		var blocks []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(body.Messages[n-1].Content, &blocks) == nil {
			for _, b := range blocks {
				if b.Type == "tool_result" {
					toolResult = string(b.Content)
				}
			}
		}
	}
	for _, t := range body.Tools {
		if strings.HasSuffix(t.Name, "__"+goToolEcho) { // Claude Code names MCP tools mcp__{server}__{tool}
			echoTool = t.Name
		}
	}
	f.mu.Lock()
	for _, t := range body.Tools {
		f.toolNames = append(f.toolNames, t.Name)
	}
	f.requests++
	f.apiKeys = append(f.apiKeys, r.Header.Get("x-api-key"))
	if toolResult != "" {
		f.results = append(f.results, toolResult)
	}
	if toolResult == "" && echoTool != "" {
		f.toolUse++
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	ev := func(typ, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		w.(http.Flusher).Flush()
	}
	ev("message_start", `{"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"output_tokens":1}}}`)
	stop := "end_turn"
	switch {
	case toolResult != "":
		text, _ := json.Marshal("The tool answered: " + toolResult)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+string(text)+`}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	case echoTool != "":
		name, _ := json.Marshal(echoTool)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_fake1","name":`+string(name)+`,"input":{}}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"message\":\"hello from claude code\"}"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		stop = "tool_use"
	default:
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	}
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"`+stop+`","stop_sequence":null},"usage":{"output_tokens":10}}`)
	ev("message_stop", `{"type":"message_stop"}`)
}

// fakeAgentOpenAI is fakeClaude speaking OpenAI's chat completions, for a model on an
// OpenAI-compatible deployment: the gateway translates Claude Code's Messages API calls.
type fakeAgentOpenAI struct {
	mu        sync.Mutex
	toolUse   int
	results   []string
	toolNames []string
}

func (f *fakeAgentOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Path != "/chat/completions" {
		http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	var toolResult, echoTool string
	if n := len(body.Messages); n > 0 && body.Messages[n-1].Role == "tool" {
		_ = json.Unmarshal(body.Messages[n-1].Content, &toolResult)
	}
	f.mu.Lock()
	for _, t := range body.Tools {
		f.toolNames = append(f.toolNames, t.Function.Name)
		if strings.HasSuffix(t.Function.Name, "__"+goToolEcho) {
			echoTool = t.Function.Name
		}
	}
	if toolResult != "" {
		f.results = append(f.results, toolResult)
	} else if echoTool != "" {
		f.toolUse++
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(delta, finish string) {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-fake\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":%s}]}\n\n", delta, finish)
		w.(http.Flusher).Flush()
	}
	chunk(`{"role":"assistant","content":""}`, "null")
	finish := `"stop"`
	switch {
	case toolResult != "":
		text, _ := json.Marshal("The tool answered: " + toolResult)
		chunk(`{"content":`+string(text)+`}`, "null")
	case echoTool != "":
		name, _ := json.Marshal(echoTool)
		chunk(`{"tool_calls":[{"index":0,"id":"call_fake1","type":"function","function":{"name":`+string(name)+`,"arguments":""}}]}`, "null")
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"message\":\"hello from claude code\"}"}}]}`, "null")
		finish = `"tool_calls"`
	default:
		chunk(`{"content":"ok"}`, "null")
	}
	chunk(`{}`, finish)
	if body.StreamOptions.IncludeUsage {
		fmt.Fprint(w, "data: {\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-fake\",\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10,\"total_tokens\":110}}\n\n")
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// TestClaudeCodeThroughGateway runs Claude Code headless (`claude -p`) with one toolgate
// virtual key for both of its connections: its model traffic (ANTHROPIC_BASE_URL, the key
// in x-api-key) goes to /v1/messages, and its MCP server is the gateway's /mcp/{server}.
// The model (a fake Anthropic provider behind the gateway) calls the upstream's echo tool;
// Claude Code calls it through the gateway and hands the result back. The key is charged
// for both model calls and the tool call, in one budget; the model never sees the key.
// With the budget then lowered to what is spent, the next run is refused with
// budget_exceeded, which Claude Code reports.
func TestClaudeCodeThroughGateway(t *testing.T) {
	n := requireNode(t)
	t.Run("anthropic model", func(t *testing.T) {
		model := &fakeClaude{}
		claudeCodeRun(t, n, model, "anthropic/claude-fake", func() (int, []string, []string) {
			model.mu.Lock()
			defer model.mu.Unlock()
			for _, k := range model.apiKeys {
				if k != "sk-provider" {
					t.Errorf("the provider got x-api-key %q, want only the deployment's key", k)
				}
			}
			return model.toolUse, append([]string(nil), model.results...), append([]string(nil), model.toolNames...)
		})
	})
	// The same through the Messages API to chat completions translation.
	t.Run("openai-compatible model", func(t *testing.T) {
		model := &fakeAgentOpenAI{}
		claudeCodeRun(t, n, model, "openai/gpt-fake", func() (int, []string, []string) {
			model.mu.Lock()
			defer model.mu.Unlock()
			return model.toolUse, append([]string(nil), model.results...), append([]string(nil), model.toolNames...)
		})
	})
}

// claudeCodeRun is TestClaudeCodeThroughGateway with the model served by fake as a
// deployment of provider/name; stats reports how often the fake called the tool, the tool
// results it was given and the tool names it was offered.
func claudeCodeRun(t *testing.T, n nodeEnv, fake http.Handler, deployment string, stats func() (toolUse int, results, toolNames []string)) {
	up := httptest.NewServer(fake)
	defer up.Close()
	g := startLLMGateway(t, map[string]any{"model_name": "claude-fake",
		"litellm_params": map[string]any{"model": deployment, "api_base": up.URL, "api_key": "sk-provider"},
		"model_info":     map[string]any{"input_cost_per_token": 1e-7, "output_cost_per_token": 1e-5, "max_output_tokens": 1000}})
	g.api(t, http.MethodPost, "/v1/mcp/server", map[string]any{"server_name": upGo, "url": startGoSSEUpstream(t), "transport": "sse",
		"mcp_info": map[string]any{"mcp_server_cost_info": map[string]any{"default_cost_per_query": 0.05}}})
	waitTools(t, g.base+"/mcp/"+upGo, map[string]string{"Authorization": "Bearer " + g.key}, goToolEcho, 30*time.Second)
	out := g.api(t, http.MethodPost, "/key/generate", map[string]any{"key_alias": "claude-code", "max_budget": 0.2,
		"object_permission": map[string]any{"mcp_servers": []string{upGo}}})
	vkey, _ := out["key"].(string)

	bin := filepath.Join(n.modules, "@anthropic-ai", "claude-code-linux-x64", "claude")
	home := t.TempDir()
	proj := filepath.Join(home, "project")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	env := n.env("HOME="+home, "CLAUDE_CONFIG_DIR="+filepath.Join(home, ".claude"),
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1",
		"ANTHROPIC_BASE_URL="+g.base, "ANTHROPIC_API_KEY="+vkey,
		"ANTHROPIC_MODEL=claude-fake", "ANTHROPIC_SMALL_FAST_MODEL=claude-fake",
		// Offer MCP tools to the model directly: the fake does not search deferred tools.
		"ENABLE_TOOL_SEARCH=false")
	ctx := context.Background()
	if _, stderr, err := runCmd(ctx, proj, env, 60*time.Second, bin, "mcp", "add", "--transport", "http",
		"toolgate", g.base+"/mcp/"+upGo, "--header", "Authorization: Bearer "+vkey); err != nil {
		t.Fatalf("claude mcp add: %v: %s", err, stderr)
	}
	runClaudePrompt := func() map[string]any {
		t.Helper()
		stdout, stderr, err := runCmd(ctx, proj, env, 120*time.Second, bin, "-p", "Echo a greeting with the toolgate echo tool.",
			"--allowedTools", "mcp__toolgate", "--output-format", "json")
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		var res map[string]any
		if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
			t.Fatalf("claude -p: %v; output %q; stderr %s", err, stdout, stderr)
		}
		return res
	}

	res := runClaudePrompt()
	toolUse, results, toolNames := stats()
	if res["is_error"] == true || !strings.Contains(fmt.Sprint(res["result"]), "Echo: hello from claude code") {
		t.Fatalf("claude -p result %v, want the echo tool's answer relayed by the model (tools offered to the model: %v)", res, toolNames)
	}
	if toolUse < 1 || len(results) < 1 {
		t.Fatalf("the model was asked %d times to use the tool and got %d results", toolUse, len(results))
	}

	// The key paid for every model call (100 in and 10 out tokens each: 0.00011) and one
	// tool call (0.05), and the spend log has them under the key.
	var rows []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows = spendRowsOf(t, g, vkey)
		var llmCalls, toolCalls int
		var sum float64
		for _, r := range rows {
			sum += r["spend"].(float64)
			switch r["call_type"] {
			case "anthropic_messages":
				llmCalls++
			case "mcp_tool_call":
				toolCalls++
			}
		}
		info := g.api(t, http.MethodGet, "/key/info?key="+vkey, nil)
		spend, _ := info["info"].(map[string]any)["spend"].(float64)
		if llmCalls >= 2 && toolCalls == 1 && math.Abs(sum-(float64(llmCalls)*0.00011+0.05)) < 1e-9 && math.Abs(spend-sum) < 1e-9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spend rows %v, key spend %v; want at least 2 anthropic_messages rows at 0.00011 and one mcp_tool_call at 0.05, summing to the key's spend", rows, spend)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// With the budget lowered to just above what is spent, Claude Code's next model call
	// (whose reservation is its max_tokens, capped at the model's 1,000: 0.01) is refused,
	// and Claude Code reports it.
	spent := 0.0
	for _, r := range rows {
		spent += r["spend"].(float64)
	}
	g.api(t, http.MethodPost, "/key/update", map[string]any{"key": vkey, "max_budget": spent + 0.005})
	res = runClaudePrompt()
	if res["is_error"] != true || res["api_error_type"] != "budget_exceeded" || !strings.Contains(fmt.Sprint(res["result"]), "Budget has been exceeded") {
		t.Fatalf("second run: %v, want Claude Code to report budget_exceeded", res)
	}
}

// spendRowsOf returns the spend log rows of the virtual key secret, through /spend/logs.
func spendRowsOf(t *testing.T, g *gateway, secret string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+"/spend/logs", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("/spend/logs: %d %s", resp.StatusCode, b)
	}
	return rows
}
