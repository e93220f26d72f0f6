package llm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOpenAI is an httptest server speaking OpenAI's wire format. fail, when set, decides
// per call whether to answer with an error status instead.
type fakeOpenAI struct {
	*httptest.Server
	calls atomic.Int64
	fail  func(n int64) int // status to fail with, or 0
	delay time.Duration
	// stream options
	chunks     int // content chunks per stream
	chunkDelay time.Duration
	withUsage  bool // final chunk carries usage
	completion int64
	// respEnd is the last event of a Responses API stream: "" for response.completed,
	// "cut" for none (the connection closes), or another event type such as
	// response.failed.
	respEnd string
	// searchCalls is how many web_search_call items a Responses API answer has, and
	// extraItems more output items before its message (JSON, each followed by a comma).
	searchCalls int
	extraItems  string
	// cached is how many of the 12 prompt tokens the usage reports as read from the cache.
	cached int64
	// imageUsage, when set, is the usage of an image answer (token-priced image models).
	imageUsage string
	// respID is the ID of its Responses API answers; "" for resp_1.
	respID string

	mu        sync.Mutex
	lastBody  map[string]any
	lastAuth  string
	lastPath  string
	lastFiles []sentFile // file parts of the last multipart body
	traces    []string   // traceparent of each call, "" when none
}

// sentFile is a file part a fake provider received.
type sentFile struct{ field, name, contentType, data string }

func newFakeOpenAI(t testing.TB) *fakeOpenAI {
	f := &fakeOpenAI{chunks: 5, withUsage: true, completion: 8}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	var files []sentFile
	if mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		body = map[string]any{}
		mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			data, _ := io.ReadAll(p)
			if p.FileName() != "" {
				files = append(files, sentFile{p.FormName(), p.FileName(), p.Header.Get("Content-Type"), string(data)})
			} else {
				body[p.FormName()] = string(data)
			}
		}
	} else {
		_ = json.Unmarshal(b, &body)
	}
	f.mu.Lock()
	f.lastBody, f.lastAuth, f.lastPath, f.lastFiles = body, r.Header.Get("Authorization")+r.Header.Get("api-key"), r.URL.String(), files
	f.traces = append(f.traces, r.Header.Get("Traceparent"))
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	if f.fail != nil {
		if st := f.fail(n); st != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"error":{"message":"fake failure %d","type":"server_error","param":null,"code":"%d"}}`, st, st)
			return
		}
	}
	model, _ := body["model"].(string)
	if _, rest, ok := strings.Cut(r.URL.Path, "/responses/"); ok {
		f.serveStoredResponse(w, r.Method, rest)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/completions") && !strings.HasSuffix(r.URL.Path, "/chat/completions"):
		f.serveTextCompletion(w, body, model)
		return
	case strings.HasSuffix(r.URL.Path, "/responses"):
		f.serveResponses(w, body, model)
		return
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":%q,"usage":{"prompt_tokens":6,"total_tokens":6}}`, model)
		return
	case strings.HasSuffix(r.URL.Path, "/images/generations"), strings.HasSuffix(r.URL.Path, "/images/edits"):
		nimg := 1
		switch v := body["n"].(type) {
		case float64:
			nimg = int(v)
		case string: // a form field
			nimg, _ = strconv.Atoi(v)
		}
		var data []string
		for range nimg {
			data = append(data, `{"url":"https://example.invalid/img.png"}`)
		}
		w.Header().Set("Content-Type", "application/json")
		usage := ""
		if f.imageUsage != "" {
			usage = `,"usage":` + f.imageUsage
		}
		fmt.Fprintf(w, `{"created":1700000000,"data":[%s]%s}`, strings.Join(data, ","), usage)
		return
	}
	if s, _ := body["stream"].(bool); s {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n", model)
		fl.Flush()
		for i := range f.chunks {
			if f.chunkDelay > 0 {
				select {
				case <-time.After(f.chunkDelay):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abcdefgh%d\"},\"finish_reason\":null}]}\n\n", model, i%10)
			fl.Flush()
		}
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", model)
		if f.withUsage {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":%d}}}\n\n", model, f.completion, 12+f.completion, f.cached)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		fl.Flush()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}}`, model, f.completion, 12+f.completion, f.cached)
}

// responsesAnswer is the fake's Responses API answer (12 input tokens, f.completion output).
func (f *fakeOpenAI) responsesAnswer(model, status string) string {
	searches := strings.Repeat(`{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"q"}},`, f.searchCalls) + f.extraItems
	return fmt.Sprintf(`{"id":%q,"object":"response","created_at":1,"status":%q,"model":%q,"output":[`+searches+`{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hello there","annotations":[]}]}],"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":`+strconv.FormatInt(f.cached, 10)+`},"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":%d}}`,
		f.responseID(), status, model, f.completion, 12+f.completion)
}

func (f *fakeOpenAI) responseID() string {
	if f.respID != "" {
		return f.respID
	}
	return "resp_1"
}

// serveStoredResponse answers GET and DELETE /responses/{id} and GET
// /responses/{id}/input_items for the one response the fake has made.
func (f *fakeOpenAI) serveStoredResponse(w http.ResponseWriter, method, rest string) {
	id, sub, _ := strings.Cut(rest, "/")
	w.Header().Set("Content-Type", "application/json")
	if id != f.responseID() {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":{"message":"Response with id '%s' not found.","type":"invalid_request_error","param":null,"code":null}}`, id)
		return
	}
	switch {
	case sub == "input_items" && method == http.MethodGet:
		_, _ = io.WriteString(w, `{"object":"list","data":[{"type":"message","id":"msg_0","role":"user","content":[{"type":"input_text","text":"hi"}]}],"first_id":"msg_0","last_id":"msg_0","has_more":false}`)
	case sub == "" && method == http.MethodGet:
		_, _ = io.WriteString(w, f.responsesAnswer("upstream-gpt", "completed"))
	case sub == "" && method == http.MethodDelete:
		fmt.Fprintf(w, `{"id":%q,"object":"response","deleted":true}`, id)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// serveResponses answers a Responses API call, streamed as its events when asked.
func (f *fakeOpenAI) serveResponses(w http.ResponseWriter, body map[string]any, model string) {
	if s, _ := body["stream"].(bool); !s {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, f.responsesAnswer(model, "completed"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	ev := func(typ, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		fl.Flush()
	}
	ev("response.created", fmt.Sprintf(`{"type":"response.created","sequence_number":0,"response":{"id":%q,"object":"response","status":"in_progress","model":%q,"output":[],"usage":null}}`, f.responseID(), model))
	for i := range f.chunks {
		ev("response.output_text.delta", fmt.Sprintf(`{"type":"response.output_text.delta","sequence_number":%d,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"abcdefgh%d"}`, i+1, i%10))
	}
	switch f.respEnd {
	case "cut":
	case "":
		ev("response.completed", `{"type":"response.completed","sequence_number":99,"response":`+f.responsesAnswer(model, "completed")+`}`)
	default:
		ev(f.respEnd, `{"type":"`+f.respEnd+`","sequence_number":99,"response":`+f.responsesAnswer(model, "failed")+`}`)
	}
}

func (f *fakeOpenAI) body() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBody
}

func (f *fakeOpenAI) traceparents() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.traces...)
}

func (f *fakeOpenAI) files() []sentFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastFiles
}

// fakeAnthropic is an httptest server speaking the Messages API.
type fakeAnthropic struct {
	*httptest.Server
	mu       sync.Mutex
	lastBody map[string]any
	lastKey  string
	lastHdr  http.Header
	toolCall bool
	searches int // web searches reported in usage.server_tool_use
	// cacheUsage is added to the usage of an answer and of a stream's message_start, e.g.
	// `,"cache_read_input_tokens":100`.
	cacheUsage string
}

// serverToolUse is the usage field reporting f.searches, with its leading comma; "" for
// none.
func (f *fakeAnthropic) serverToolUse() string {
	if f.searches == 0 {
		return ""
	}
	return fmt.Sprintf(`,"server_tool_use":{"web_search_requests":%d}`, f.searches)
}

func newFakeAnthropic(t testing.TB) *fakeAnthropic {
	f := &fakeAnthropic{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAnthropic) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" || r.Header.Get("anthropic-version") == "" {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"type":"error","error":{"type":"not_found_error","message":"bad path"}}`)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	f.mu.Lock()
	f.lastBody, f.lastKey, f.lastHdr = body, r.Header.Get("x-api-key"), r.Header.Clone()
	f.mu.Unlock()
	if tc, _ := body["tool_choice"].(map[string]any); tc["name"] == "json_tool_call" { // response_format, translated
		f.serveJSONTool(w, body["stream"] == true)
		return
	}
	if s, _ := body["stream"].(bool); s {
		w.Header().Set("Content-Type", "text/event-stream")
		ev := func(typ, data string) { fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data) }
		ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":20,"output_tokens":1`+f.cacheUsage+`}}}`)
		ev("ping", `{"type":"ping"}`)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":1}`)
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30`+f.serverToolUse()+`}}`)
		ev("message_stop", `{"type":"message_stop"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if f.toolCall {
		fmt.Fprint(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":30}}`)
		return
	}
	fmt.Fprint(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Bonjour"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"output_tokens":30`+f.serverToolUse()+f.cacheUsage+`}}`)
}

// serveJSONTool answers a forced json_tool_call with {"answer":42}, after a sentence the
// translation must leave out.
func (f *fakeAnthropic) serveJSONTool(w http.ResponseWriter, stream bool) {
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"msg_j","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Here it is."},{"type":"tool_use","id":"toolu_j","name":"json_tool_call","input":{"answer":42}}],"stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":30}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	ev := func(typ, data string) { fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data) }
	ev("message_start", `{"type":"message_start","message":{"id":"msg_j","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":20,"output_tokens":1}}}`)
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Here it is."}}`)
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_j","name":"json_tool_call","input":{}}}`)
	ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"answer\":"}}`)
	ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"42}"}}`)
	ev("content_block_stop", `{"type":"content_block_stop","index":1}`)
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}`)
	ev("message_stop", `{"type":"message_stop"}`)
}

func (f *fakeAnthropic) body() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBody
}

// serveTextCompletion answers a legacy text completion, streamed as f.chunks text chunks
// (and a usage chunk when withUsage) when asked.
func (f *fakeOpenAI) serveTextCompletion(w http.ResponseWriter, body map[string]any, model string) {
	if s, _ := body["stream"].(bool); !s {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":%q,"choices":[{"text":"hello there","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d}}`,
			model, f.completion, 12+f.completion)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i := range f.chunks {
		fmt.Fprintf(w, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":%q,\"choices\":[{\"text\":\"abcdefgh%d\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n", model, i%10)
		fl.Flush()
	}
	fmt.Fprintf(w, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":%q,\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n", model)
	if f.withUsage {
		fmt.Fprintf(w, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":%q,\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", model, f.completion, 12+f.completion)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
