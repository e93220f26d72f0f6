package llm

import (
	"bytes"
	"io"
	"testing"
)

// FuzzStreamPassThrough: whatever a provider sends, the streams that pass its events on
// (the Messages API, the Responses API, and OpenAI chunks as pipe writes them) neither
// panic nor loop, report no negative usage, and write each event so that a client reads
// back exactly the event the provider sent, multi-line data included.
func FuzzStreamPassThrough(f *testing.F) {
	for _, s := range []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2},\"output\":[{\"type\":\"web_search_call\"}]}}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n",
		"data: {\"a\":\ndata: 1}\n\n: comment\r\ndata:  two spaces\n\n",
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"overloaded\"}}\n\n",
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":-5,\"output_tokens\":-2}}}\n\n",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-7,\"input_tokens\":-1}}\n\nevent: message_stop\ndata: {}\n\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":-4}}\n\ndata: [DONE]\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		streams := map[string]chunkStream{
			"messages":  &messagesStream{sseBody: newSSEBody(io.NopCloser(bytes.NewReader(in)))},
			"responses": &responsesStream{sseBody: newSSEBody(io.NopCloser(bytes.NewReader(in)))},
			"openai":    &openAIStream{sseBody: newSSEBody(io.NopCloser(bytes.NewReader(in))), keys: contentKeys},
		}
		for name, st := range streams {
			ref := newSSEReader(bytes.NewReader(in))
			for i := 0; ; i++ {
				if i > len(in) {
					t.Fatalf("%s: more events than input bytes", name)
				}
				chunk, err := st.next()
				if err != nil {
					break
				}
				typ, data, err := ref.event()
				if err != nil {
					t.Fatalf("%s: returned an event the input does not hold: %q", name, chunk)
				}
				out := chunk
				if name == "openai" { // a chunk's data, which pipe writes as a data event
					if !bytes.Equal(chunk, data) {
						t.Fatalf("openai: chunk %q, want the event's data %q", chunk, data)
					}
					out, typ = appendEvent(nil, "", chunk), ""
				}
				back := newSSEReader(bytes.NewReader(out))
				btyp, bdata, err := back.event()
				if err != nil || btyp != typ || !bytes.Equal(bdata, data) {
					t.Fatalf("%s: wrote %q, which reads back as %q %q (%v), want %q %q", name, out, btyp, bdata, err, typ, data)
				}
				if _, _, err := back.event(); err != io.EOF {
					t.Fatalf("%s: wrote %q, more than one event", name, out)
				}
			}
			if u, _ := st.usage(); u.PromptTokens < 0 || u.CompletionTokens < 0 || u.WebSearches < 0 {
				t.Fatalf("%s: negative usage %+v", name, u)
			}
			_ = st.close()
		}
	})
}
