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
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := parseBody(b)
		if err != nil {
			return
		}
		out, err := messagesToChat(body)
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
		if err := json.Unmarshal(enc, &c); err != nil {
			t.Fatalf("translated body %s: %v", enc, err)
		}
	})
}
