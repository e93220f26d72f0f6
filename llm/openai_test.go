package llm

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestUsageOf(t *testing.T) {
	tests := []struct {
		body string
		want Usage
	}{
		{`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}},
		{`{"usage" : {"prompt_tokens":3},"system_fingerprint":"x"}`, Usage{PromptTokens: 3}},
		{`{"choices":[{"message":{"content":"say \"usage\": 5"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`, Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}},
		{`{"usage":{"prompt_tokens":9},"choices":[{"message":{"content":"the \"usage\" key"}}]}`, Usage{PromptTokens: 9}},
		{`{"usage":null}`, Usage{}},
		// The cached part of the prompt.
		{`{"usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,"prompt_tokens_details":{"cached_tokens":80,"audio_tokens":0}}}`,
			Usage{PromptTokens: 100, CompletionTokens: 10, TotalTokens: 110, CacheReadTokens: 80}},
		// The Responses API's names.
		{`{"output":[],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":1},"output_tokens":6,"total_tokens":11},"metadata":{}}`,
			Usage{PromptTokens: 5, CompletionTokens: 6, TotalTokens: 11, CacheReadTokens: 1}},
		{`{}`, Usage{}},
	}
	for _, tc := range tests {
		if got := usageOf([]byte(tc.body)); got != tc.want {
			t.Errorf("usageOf(%s) = %+v, want %+v", tc.body, got, tc.want)
		}
	}
}

func TestContentBytes(t *testing.T) {
	tests := []struct {
		chunk string
		want  int
	}{
		{`{"choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}]}`, 5},
		{`{"choices":[{"delta":{"content":"a\"b"}}]}`, 4},
		{`{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}`, 1 + 9},
		{`{"choices":[{"delta":{"reasoning_content":"hmm", "content": "ok"}}]}`, 5},
		{`{"choices":[],"usage":{"prompt_tokens":1}}`, 0},
		{`{"choices":[{"delta":{"content":"unterminated`, 12},
	}
	for _, tc := range tests {
		if got := contentBytes([]byte(tc.chunk), contentKeys); got != tc.want {
			t.Errorf("contentBytes(%s) = %d, want %d", tc.chunk, got, tc.want)
		}
	}
}

// FuzzUsageOf: usageOf finds the usage of a completion whatever text precedes it (content
// with braces, quotes and escapes, nested usage details with the cached part of the
// prompt), and never panics on any body.
func FuzzUsageOf(f *testing.F) {
	f.Add(`hello {world}`, int64(12), int64(8))
	f.Add(`a "quoted \" brace }`, int64(0), int64(1))
	f.Add(`\\`, int64(1<<40), int64(3))
	f.Fuzz(func(t *testing.T, content string, prompt, completion int64) {
		_ = usageOf([]byte(content)) // any bytes: no panic
		sent := Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
		msg, _ := json.Marshal(content)
		u, _ := json.Marshal(sent)
		detailed := append(u[:len(u)-1:len(u)-1], []byte(`,"prompt_tokens_details":{"cached_tokens":1,"x":{"y":"}"}}}`)...)
		cached := sent
		cached.CacheReadTokens = 1
		// Negative counts read as zero, and the cached part is never more than the prompt.
		for usage, want := range map[string]Usage{string(u): sent.valid(), string(detailed): cached.valid()} {
			body := `{"choices":[{"message":{"content":` + string(msg) + `}}],"usage": ` + usage + `}`
			if got := usageOf([]byte(body)); got != want {
				t.Fatalf("usageOf(%s) = %+v, want %+v", body, got, want)
			}
		}
	})
}

func TestReadAll(t *testing.T) {
	body := func(s string, n int64) *http.Response {
		return &http.Response{ContentLength: n, Body: io.NopCloser(strings.NewReader(s))}
	}
	for _, tc := range []struct {
		s    string
		n    int64
		want string
		err  bool
	}{
		{"hello", 5, "hello", false},
		{"", 0, "", false},
		{"hello", -1, "hello", false},
		{"hello world", 5, "hello world", false}, // longer than announced: all of it
		{"hel", 5, "", true},                     // shorter: an error, never a cut answer
		{"", 5, "", true},
	} {
		got, err := readAll(body(tc.s, tc.n))
		if (err != nil) != tc.err || string(got) != tc.want {
			t.Errorf("readAll(%q, length %d) = %q, %v; want %q, error %v", tc.s, tc.n, got, err, tc.want, tc.err)
		}
	}
}
