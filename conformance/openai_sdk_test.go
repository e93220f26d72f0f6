package conformance

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOpenAI speaks OpenAI's wire format for chat completions (plain and streamed, with
// usage in the stream when stream_options.include_usage asks for it), the Responses API
// (plain and streamed), and embeddings (float or base64, as encoding_format asks), and
// records the bodies it receives.
type fakeOpenAI struct {
	mu     sync.Mutex
	bodies []map[string]any
	auth   []string
	stored []string // method and path of each call on a stored response
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/responses/"); ok {
		f.mu.Lock()
		f.stored = append(f.stored, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case rest == "resp_1" && r.Method == http.MethodGet:
			serveResponses(w, false)
		case rest == "resp_1" && r.Method == http.MethodDelete:
			_, _ = io.WriteString(w, `{"id":"resp_1","object":"response","deleted":true}`)
		case rest == "resp_1/input_items":
			_, _ = io.WriteString(w, `{"object":"list","data":[{"type":"message","id":"msg_0","role":"user","status":"completed","content":[{"type":"input_text","text":"Say hello."}]}],"first_id":"msg_0","last_id":"msg_0","has_more":false}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"message":"Response not found.","type":"invalid_request_error"}}`)
		}
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/responses"):
		serveResponses(w, body["stream"] == true)
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		vec := []float32{0.25, -0.5, 1}
		var emb any = vec
		if body["encoding_format"] == "base64" {
			b := make([]byte, 4*len(vec))
			for i, v := range vec {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "model": body["model"],
			"data":  []any{map[string]any{"object": "embedding", "index": 0, "embedding": emb}},
			"usage": map[string]any{"prompt_tokens": 2, "total_tokens": 2}})
	case body["stream"] == true:
		w.Header().Set("Content-Type", "text/event-stream")
		for i, word := range []string{"hello", " from", " the", " stream"} {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":%q},\"finish_reason\":null}]}\n\n",
				map[bool]string{true: `"role":"assistant",`}[i == 0], word)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
		if so, _ := body["stream_options"].(map[string]any); so["include_usage"] == true {
			fmt.Fprint(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4,\"total_tokens\":16}}\n\n")
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	default:
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`)
	}
}

// serveResponses answers a Responses API call: "hello there" for 12 input and 8 output
// tokens, or streamed as four words' deltas and response.completed with 12 and 4.
func serveResponses(w http.ResponseWriter, stream bool) {
	answer := func(text string, out int) string {
		return fmt.Sprintf(`{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-x",`+
			`"output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":%q,"annotations":[]}]}],`+
			`"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":%d}}`, text, out, 12+out)
	}
	if !stream {
		_, _ = io.WriteString(w, answer("hello there", 8))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	seq := 0
	ev := func(typ, rest string) {
		fmt.Fprintf(w, "event: %s\ndata: {\"type\":%q,\"sequence_number\":%d,%s}\n\n", typ, typ, seq, rest)
		w.(http.Flusher).Flush()
		seq++
	}
	ev("response.created", `"response":{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"gpt-x","output":[],"usage":null}`)
	for _, word := range []string{"hello", " from", " the", " stream"} {
		ev("response.output_text.delta", fmt.Sprintf(`"item_id":"msg_1","output_index":0,"content_index":0,"delta":%q`, word))
	}
	ev("response.completed", `"response":`+answer("hello from the stream", 4))
}

func (f *fakeOpenAI) seen() ([]map[string]any, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.bodies...), append([]string(nil), f.auth...)
}

// sdkRun is what clients/openai-sdk.mjs prints.
type sdkRun struct {
	Chat struct {
		Content, Finish, CallID string
		Usage                   map[string]float64
	}
	Stream struct {
		Text   string
		Usage  map[string]float64
		Chunks int
	}
	Embedding struct {
		Dims  int
		Usage map[string]float64
	}
	Responses struct {
		Text  string
		Usage map[string]any
	}
	ResponsesStream struct {
		Text   string
		Usage  map[string]any
		Events int
	}
	BridgedStream struct { // a streamed response from an Anthropic model, translated
		Text  string
		Usage map[string]any
		Types []string
	}
	Stored struct { // the first response, continued, read back, listed and deleted
		ID, NextID, RetrievedID, RetrievedText string
		Items                                  []string
	}
	Models  []string
	Calls   int
	Refused *struct {
		Status        int
		Type, Message string
		Code          any
	}
	Failure string
}

// TestOpenAISDK is the LLM half of the "switch by changing a URL" promise, with OpenAI's
// official JavaScript SDK: through a virtual key with a budget, a chat completion with
// tools, a streamed one with usage, a response and a streamed one (the Responses API), a
// streamed response from an Anthropic model (translated), an embedding in the SDK's
// default base64 encoding and the model list all work; each call's spend reaches the key; and when the budget runs
// out the SDK raises an APIError carrying budget_exceeded, with nothing charged for it.
func TestOpenAISDK(t *testing.T) {
	n := requireNode(t)
	fake := &fakeOpenAI{}
	up := httptest.NewServer(fake)
	defer up.Close()
	claude := httptest.NewServer(&fakeClaude{})
	defer claude.Close()
	models := []map[string]any{
		{"model_name": "claude", "litellm_params": map[string]any{"model": "anthropic/claude-fake", "api_base": claude.URL, "api_key": "sk-ant-secret"},
			"model_info": map[string]any{"input_cost_per_token": 0.0001, "output_cost_per_token": 0.0002}},
		{"model_name": "gpt", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-provider-secret"},
			"model_info": map[string]any{"input_cost_per_token": 0.001, "output_cost_per_token": 0.002, "max_output_tokens": 64}},
		{"model_name": "emb", "litellm_params": map[string]any{"model": "openai/text-embed", "api_base": up.URL, "api_key": "sk-provider-secret"},
			"model_info": map[string]any{"mode": "embedding", "input_cost_per_token": 0.001}},
	}
	g := startLLMGateway(t, models...)

	// Chat: 12 × 0.001 + 8 × 0.002 = 0.028; stream: 12 × 0.001 + 4 × 0.002 = 0.020;
	// embedding: 2 × 0.001 = 0.002; a response and a streamed one as the chats; a streamed
	// response from the Anthropic model: 100 × 0.0001 + 10 × 0.0002 = 0.012; the response
	// continued (previous_response_id) as a chat. A budget of 0.2 leaves room for a few more
	// chats.
	const budget = 0.2
	out := g.api(t, http.MethodPost, "/key/generate", map[string]any{"key_alias": "sdk", "max_budget": budget})
	vkey, _ := out["key"].(string)

	ctx := context.Background()
	stdout, stderr, err := runCmd(ctx, t.TempDir(), n.env(), 60*time.Second, n.node, filepath.Join(n.dir, "clients", "openai-sdk.mjs"), g.base, vkey)
	if err != nil {
		t.Fatalf("openai-sdk.mjs: %v\nstderr: %s\nstdout: %s", err, stderr, stdout)
	}
	var run sdkRun
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &run); err != nil {
		t.Fatalf("output %q: %v (stderr %s)", stdout, err, stderr)
	}
	if run.Failure != "" {
		t.Fatalf("the SDK failed: %s", run.Failure)
	}
	t.Logf("SDK run: %s", strings.TrimSpace(stdout))
	if run.Chat.Content != "hello there" || run.Chat.Finish != "stop" || run.Chat.Usage["total_tokens"] != 20 || run.Chat.CallID == "" {
		t.Errorf("chat: got %+v, want the provider's answer, usage and an x-litellm-call-id", run.Chat)
	}
	if run.Stream.Text != "hello from the stream" || run.Stream.Usage["completion_tokens"] != 4 {
		t.Errorf("stream: got %+v, want the four words and the provider's usage", run.Stream)
	}
	if run.Embedding.Dims != 3 || run.Embedding.Usage["prompt_tokens"] != 2 {
		t.Errorf("embedding: got %+v, want 3 dimensions decoded from base64", run.Embedding)
	}
	if run.Responses.Text != "hello there" || run.Responses.Usage["output_tokens"] != 8.0 {
		t.Errorf("response: got %+v, want the provider's answer and usage", run.Responses)
	}
	if run.ResponsesStream.Text != "hello from the stream" || run.ResponsesStream.Usage["output_tokens"] != 4.0 || run.ResponsesStream.Events != 6 {
		t.Errorf("streamed response: got %+v, want the four words, all 6 events and the final usage", run.ResponsesStream)
	}
	if b := run.BridgedStream; b.Text != "ok" || b.Usage["output_tokens"] != 10.0 || len(b.Types) == 0 ||
		b.Types[0] != "response.created" || b.Types[len(b.Types)-1] != "response.completed" {
		t.Errorf("streamed response from the Anthropic model: got %+v, want its answer, usage and the Responses API's events", b)
	}
	if st := run.Stored; !strings.HasPrefix(st.ID, "resp_tg1_") || !strings.HasPrefix(st.NextID, "resp_tg1_") ||
		st.RetrievedID != st.ID || st.RetrievedText != "hello there" || strings.Join(st.Items, ",") != "msg_0" {
		t.Errorf("stored response: got %+v, want gateway IDs, the response read back under its ID and its input item", st)
	}
	if strings.Join(run.Models, ",") != "claude,emb,gpt" {
		t.Errorf("models: got %v, want [claude emb gpt]", run.Models)
	}
	if run.Refused == nil || run.Refused.Status != 400 || run.Refused.Type != "budget_exceeded" ||
		!strings.Contains(strings.ToLower(run.Refused.Message), "budget") {
		t.Fatalf("after %d more chats: refusal %+v, want a 400 APIError of type budget_exceeded", run.Calls, run.Refused)
	}
	if run.Calls < 1 {
		t.Errorf("the budget refused the first extra chat; want room for at least one")
	}

	// The provider saw the SDK's requests with the deployment's key, not the caller's, and
	// the bodies as sent (tools, stream_options, encoding_format).
	bodies, auth := fake.seen()
	for _, a := range auth {
		if a != "Bearer sk-provider-secret" {
			t.Fatalf("provider got Authorization %q, want the deployment's key", a)
		}
	}
	if len(bodies) < 6 || bodies[0]["tools"] == nil || bodies[1]["stream_options"] == nil || bodies[2]["encoding_format"] != "base64" ||
		bodies[3]["input"] != "Say hello." || bodies[4]["stream"] != true || bodies[5]["previous_response_id"] != "resp_1" {
		t.Errorf("provider bodies: %v", bodies)
	}
	fake.mu.Lock()
	stored := strings.Join(fake.stored, ", ")
	fake.mu.Unlock()
	if stored != "GET /responses/resp_1, GET /responses/resp_1/input_items, DELETE /responses/resp_1" {
		t.Errorf("provider's stored-response calls: %s", stored)
	}

	// Every admitted call is charged to the key, and the refused one is not.
	want := 0.028 + 0.020 + 0.002 + 0.028 + 0.020 + 0.012 + 0.028 + float64(run.Calls)*0.028
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := g.api(t, http.MethodGet, "/key/info?key="+vkey, nil)
		inf, _ := info["info"].(map[string]any)
		spend, _ := inf["spend"].(float64)
		if math.Abs(spend-want) < 1e-9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key spend %v, want %v (%d extra chats)", spend, want, run.Calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want > budget+1e-9 {
		t.Errorf("spend %v passed the %v budget", want, budget)
	}
}
