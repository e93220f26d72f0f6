package llm

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzMessagesToChat: any body is either refused with a request error or becomes a chat
// completion body whose messages are a list, with no panic on the way.
func FuzzMessagesToChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","system":[{"type":"text","text":"s"}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}],"is_error":true}]}]}`,
		`{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"http://x"}}]}],"tool_choice":{"type":"any"},"stream":true}`,
		`{"messages":null,"tools":[{"name":"x","input_schema":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkToChat(t, b, messagesToChat, false) })
}

// FuzzResponsesToChat: any Responses API body is either refused with a request error or
// becomes a chat completion body with a list of messages, with no panic on the way.
func FuzzResponsesToChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":5}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"http://x"}]},{"type":"function_call","call_id":"c","name":"n","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"r"}]}],"tools":[{"type":"function","name":"n","parameters":null}],"tool_choice":"required","stream":true}`,
		`{"input":[{"type":"function_call","call_id":"c"},{"type":"reasoning"},{"role":"developer","content":"x"}],"tool_choice":{"type":"function","name":"n"}}`,
		`{"input":[],"text":{"format":{"type":"text"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkToChat(t, b, responsesToChat, true) })
}

// checkToChat checks one translation of body b to a chat completion: a 400 request error,
// or a body with a list of messages (not empty, with nonEmpty).
func checkToChat(t *testing.T, b []byte, toChat func(*reqBody) (*reqBody, error), nonEmpty bool) {
	body, err := parseBody(b)
	if err != nil {
		return
	}
	out, err := toChat(body)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) || re.status != 400 {
			t.Fatalf("error %v is not a 400 request error", err)
		}
		return
	}
	enc, _ := out.encode()
	var c struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(enc, &c); err != nil || (nonEmpty && len(c.Messages) == 0) {
		t.Fatalf("translated body %s: %v", enc, err)
	}
}
