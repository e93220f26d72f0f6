package main

import (
	"bufio"
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

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// fakeOpenAI is an OpenAI-compatible provider speaking the real wire format: a
// chat.completion object, or chat.completion.chunk SSE events ending in data: [DONE], with a
// usage chunk when the caller asked for stream_options.include_usage. Every answer reports
// 20 prompt and 30 completion tokens. It records what the gateway sent it.
type fakeOpenAI struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	auths  []string
}

func newFakeOpenAI(t testing.TB) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error":{"message":"unknown route","type":"invalid_request_error"}}`, http.StatusNotFound)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, body)
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		f.mu.Unlock()
		model, _ := body["model"].(string)
		usage := `{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50}`
		if stream, _ := body["stream"].(bool); !stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1733000000,"model":%q,`+
				`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!","refusal":null},"logprobs":null,"finish_reason":"stop"}],`+
				`"usage":%s,"system_fingerprint":"fp_1"}`, model, usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(choices string, extra string) {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":%q,\"system_fingerprint\":\"fp_1\",\"choices\":%s%s}\n\n", model, choices, extra)
			w.(http.Flusher).Flush()
		}
		includeUsage := false
		if so, ok := body["stream_options"].(map[string]any); ok {
			includeUsage, _ = so["include_usage"].(bool)
		}
		nullUsage := ""
		if includeUsage {
			nullUsage = `,"usage":null`
		}
		chunk(`[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]`, nullUsage)
		for _, s := range []string{"Hello", " there", "!"} {
			chunk(fmt.Sprintf(`[{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":null}]`, s), nullUsage)
		}
		chunk(`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`, nullUsage)
		if includeUsage {
			chunk(`[]`, `,"usage":`+usage)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) last() (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		return nil, ""
	}
	return f.bodies[len(f.bodies)-1], f.auths[len(f.auths)-1]
}

// openAIHeaders are the headers the official clients send (openai-python 1.x through
// httpx, openai-node 4.x through fetch), besides Authorization and Content-Length.
var openAIHeaders = map[string]map[string]string{
	"python": {
		"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "OpenAI/Python 1.57.0",
		"X-Stainless-Lang": "python", "X-Stainless-Package-Version": "1.57.0", "X-Stainless-OS": "Linux",
		"X-Stainless-Arch": "x64", "X-Stainless-Runtime": "CPython", "X-Stainless-Runtime-Version": "3.12.3",
		"X-Stainless-Async": "false", "x-stainless-retry-count": "0", "x-stainless-read-timeout": "600",
		"Accept-Encoding": "gzip, deflate",
	},
	"js": {
		"accept": "application/json", "content-type": "application/json", "user-agent": "OpenAI/JS 4.77.0",
		"x-stainless-lang": "js", "x-stainless-package-version": "4.77.0", "x-stainless-os": "Linux",
		"x-stainless-arch": "x64", "x-stainless-runtime": "node", "x-stainless-runtime-version": "v22.12.0",
		"x-stainless-retry-count": "0",
	},
}

// openAICall is one HTTP exchange shaped like the official client's
// client.chat.completions.create(...) against base_url http://gateway/v1.
type openAICall struct {
	status int
	header http.Header
	body   []byte
	events []string // SSE data payloads, for streams
}

// errorOf decodes OpenAI's error envelope the way the clients do (APIError.type, .message).
func (c *openAICall) errorOf(t testing.TB) (typ, msg string, code any) {
	t.Helper()
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Param   any    `json:"param"`
			Code    any    `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(c.body, &e); err != nil {
		t.Fatalf("error body is not OpenAI's error shape: %v: %s", err, c.body)
	}
	return e.Error.Type, e.Error.Message, e.Error.Code
}

func chatCompletion(t testing.TB, base, key, flavour string, body string) *openAICall {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range openAIHeaders[flavour] {
		req.Header.Set(k, v)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := &openAICall{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				out.events = append(out.events, d)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("read stream: %v", err)
		}
		return out
	}
	out.body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keySpend reads the key's spend from /key/info, as a user would.
func keySpend(t testing.TB, base, key string) float64 {
	t.Helper()
	code, body := get(t, base+"/key/info", key)
	if code != http.StatusOK {
		t.Fatalf("/key/info: %d %s", code, body)
	}
	var info struct {
		Info struct {
			Spend     float64  `json:"spend"`
			MaxBudget *float64 `json:"max_budget"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("/key/info: %v: %s", err, body)
	}
	return info.Info.Spend
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestModelsAndBudgetsEndToEnd is issue 5's "done when": a model added in the YAML
// config, called through a virtual key with the OpenAI clients' request shape (stream and
// not), the spend visible on /key/info, the MCP tool calls of the same key charged to the
// same budget at the server's mcp_server_cost_info, and both kinds of call refused with
// budget_exceeded naming the key's budget once it is used up.
func TestModelsAndBudgetsEndToEnd(t *testing.T) {
	provider := newFakeOpenAI(t)
	tools := newUpstream(t, "search")
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	// 20 prompt tokens x 0.001 + 30 completion tokens x 0.002 = 0.08 per completion; the
	// hello tool costs 0.25 per call.
	yaml := `general_settings:
  master_key: sk-admin-e2e
  database_url: sqlite:` + filepath.Join(dir, "t.db") + `
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini-2024-07-18
      api_base: ` + provider.URL + `/v1
      api_key: os.environ/E2E_OPENAI_API_KEY
    model_info:
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
      max_output_tokens: 100
mcp_servers:
  search:
    url: ` + tools + `
    mcp_info:
      mcp_server_cost_info:
        default_cost_per_query: 0.01
        tool_name_to_cost_per_query:
          hello: 0.25
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"E2E_OPENAI_API_KEY": "sk-provider-secret"})
	cfg, err := loadConfig("serve", []string{"--config", file, "--host", "127.0.0.1", "--port", "0"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := mustRunMain(t, cfg)
	base := "http://" + m.Addr

	// The admin makes a virtual key with a $1 budget.
	gen := generateKey(t, base, "sk-admin-e2e", `{"key_alias":"agent","max_budget":1.0,"object_permission":{"mcp_servers":["search"]}}`)
	key := gen.Key

	// The key sees the model on /v1/models (client.models.list()).
	if code, body := get(t, base+"/v1/models", key); code != 200 || !strings.Contains(body, `"id":"gpt-4o-mini"`) {
		t.Fatalf("/v1/models: %d %s", code, body)
	}

	// 1. Non-streaming, as openai-python sends it.
	call := chatCompletion(t, base, key, "python",
		`{"messages":[{"content":"Say hello","role":"user"}],"model":"gpt-4o-mini","max_tokens":50,"user":"end-user-1"}`)
	if call.status != 200 {
		t.Fatalf("chat: %d %s", call.status, call.body)
	}
	var cc struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(call.body, &cc); err != nil || cc.Object != "chat.completion" || len(cc.Choices) != 1 ||
		cc.Choices[0].Message.Content != "Hello there!" || cc.Usage.TotalTokens != 50 {
		t.Fatalf("chat completion: %v %s", err, call.body)
	}
	sent, auth := provider.last()
	if auth != "Bearer sk-provider-secret" || sent["model"] != "gpt-4o-mini-2024-07-18" || sent["max_tokens"] != 50.0 {
		t.Errorf("provider got auth %q body %v; want the config's key, the deployment's model and max_tokens unchanged", auth, sent)
	}
	if got := keySpend(t, base, key); !near(got, 0.08) {
		t.Errorf("key spend after one completion: %v, want 0.08", got)
	}

	// 2. Streaming with usage, as openai-node sends it.
	call = chatCompletion(t, base, key, "js",
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"stream":true,"stream_options":{"include_usage":true}}`)
	if call.status != 200 || len(call.events) == 0 || call.events[len(call.events)-1] != "[DONE]" {
		t.Fatalf("stream: %d %q %s", call.status, call.events, call.body)
	}
	var text strings.Builder
	sawUsage := false
	for _, e := range call.events[:len(call.events)-1] {
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(e), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", e, err)
		}
		for _, c := range ch.Choices {
			text.WriteString(c.Delta.Content)
		}
		if ch.Usage != nil && ch.Usage.TotalTokens == 50 {
			sawUsage = true
		}
	}
	if text.String() != "Hello there!" || !sawUsage {
		t.Errorf("stream text %q, usage chunk seen %v", text.String(), sawUsage)
	}
	sent, _ = provider.last()
	if _, ok := sent["max_tokens"]; ok || sent["stream_options"] == nil {
		t.Errorf("provider body %v: the gateway must not add max_tokens nor drop stream_options", sent)
	}
	if got := keySpend(t, base, key); !near(got, 0.16) {
		t.Errorf("key spend after a streamed completion: %v, want 0.16", got)
	}

	// 3. The same key's MCP tool call draws from the same budget.
	mc := dialGateway(t, base+"/mcp", key)
	waitTool(t, mc, "search-hello")
	if got := callTool(t, mc, "search-hello"); got != "hello from search" {
		t.Fatalf("tool call: %q", got)
	}
	if got := keySpend(t, base, key); !near(got, 0.41) {
		t.Errorf("key spend after a tool call: %v, want 0.41 (0.16 + 0.25)", got)
	}

	// 4. Keep calling until the budget refuses. Each completion reserves its worst case
	// (max_output_tokens 100 x 0.002 plus the prompt estimate) and is charged 0.08.
	var refused *openAICall
	for i := 0; i < 20 && refused == nil; i++ {
		flavour := []string{"python", "js"}[i%2]
		call := chatCompletion(t, base, key, flavour,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"again"}],"stream":true,"stream_options":{"include_usage":true}}`)
		switch call.status {
		case 200:
		case 400:
			refused = call
		default:
			t.Fatalf("call %d: %d %s", i, call.status, call.body)
		}
	}
	if refused == nil {
		t.Fatal("a $1 budget never refused a completion")
	}
	typ, msg, code := refused.errorOf(t)
	if typ != "budget_exceeded" || !strings.Contains(msg, "Budget has been exceeded") || !strings.Contains(msg, "Key=") ||
		!strings.Contains(msg, "Max budget: 1") || code != "400" {
		t.Errorf("refusal: type %q message %q code %v", typ, msg, code)
	}
	spend := keySpend(t, base, key)
	if spend > 1.0 || spend < 0.8 {
		t.Errorf("spend when refused: %v, want within the $1 budget and no more than one completion's worst case below it", spend)
	}
	// The MCP tool call is refused by the same budget, on /mcp and on the REST route, and
	// nothing is charged for refusals.
	if msg := callToolRefused(t, mc, "search-hello"); !strings.Contains(msg, "Budget has been exceeded") || !strings.Contains(msg, "Key=") {
		t.Errorf("tool call over budget: %q", msg)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp-rest/tools/call", strings.NewReader(`{"name":"search-hello","arguments":{}}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest := &openAICall{status: resp.StatusCode}
	rest.body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if typ, msg, _ := rest.errorOf(t); rest.status != 400 || typ != "budget_exceeded" || !strings.Contains(msg, "Key=") {
		t.Errorf("REST tool call over budget: %d %s", rest.status, rest.body)
	}
	if got := keySpend(t, base, key); !near(got, spend) {
		t.Errorf("refused calls charged: spend %v, was %v", got, spend)
	}

	// The spend log holds every admitted call, LLM and MCP alike, once flushed.
	code2, logs := get(t, base+"/spend/logs", "sk-admin-e2e")
	deadline := time.Now().Add(10 * time.Second)
	for code2 == 200 && !strings.Contains(logs, "mcp_tool_call") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		code2, logs = get(t, base+"/spend/logs", "sk-admin-e2e")
	}
	if code2 != 200 || !strings.Contains(logs, `"mcp_tool_call"`) || !strings.Contains(logs, `"gpt-4o-mini"`) {
		t.Errorf("/spend/logs: %d %s", code2, logs)
	}
}

func dialGateway(t testing.TB, url, key string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitTool waits until the gateway lists name, or any tool when name is "" (upstreams
// connect in the background).
func waitTool(t testing.TB, c *client.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		cancel()
		if err == nil {
			for _, tl := range res.Tools {
				if name == "" || tl.Name == name {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tool %s never listed (last error %v)", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func callTool(t testing.TB, c *client.Client, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if res.IsError || len(res.Content) == 0 {
		t.Fatalf("call %s: error result %+v", name, res)
	}
	tc, _ := res.Content[0].(mcp.TextContent)
	return tc.Text
}

// callToolRefused calls name and returns the refusal's message (a JSON-RPC error or an
// error result), or "" when the call went through.
func callToolRefused(t testing.TB, c *client.Client, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err.Error()
	}
	if res.IsError && len(res.Content) > 0 {
		if tc, ok := res.Content[0].(mcp.TextContent); ok {
			return tc.Text
		}
	}
	return ""
}
