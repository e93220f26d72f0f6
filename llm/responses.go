package llm

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// OpenAI's Responses API (/v1/responses) passes through to OpenAI-compatible deployments:
// the body with only model renamed, the answer byte for byte, a stream event for event
// (anthropic/* deployments get it translated: responses_bridge.go).
// Usage is read from the answer, or from a stream's last event (response.completed,
// response.incomplete or response.failed), and charged as for chat.

// responsesStream passes a Responses API event stream through, noting the usage of its
// final event. A stream that ends before one is cut off.
type responsesStream struct {
	sseBody
	buf       []byte
	done      bool
	fail      bool // the stream ended with response.failed
	got       Usage
	hasUsage  bool
	contentSz int
}

// responsesEvent is the part of an event read here.
type responsesEvent struct {
	Type     string `json:"type"`
	Message  string `json:"message"` // of an error event
	Response *struct {
		Usage  *json.RawMessage `json:"usage"`
		Output []responseItem   `json:"output"`
	} `json:"response"`
}

// responseItem is the part of a response's output item read here.
type responseItem struct {
	Type        string `json:"type"`
	ContainerID string `json:"container_id"`
}

// hostedTools puts in u the provider-run tool calls of a response's output, which are
// billed apart from tokens: web searches, file searches, and code interpreter containers
// (billed per container, however many calls ran in it).
func hostedTools(u *Usage, items []responseItem) {
	containers := map[string]bool{}
	for _, it := range items {
		switch it.Type {
		case "web_search_call":
			u.WebSearches++
		case "file_search_call":
			u.FileSearches++
		case "code_interpreter_call":
			if !containers[it.ContainerID] {
				containers[it.ContainerID] = true
				u.CodeSessions++
			}
		}
	}
}

// responseTools puts in u the provider-run tool calls of a Responses API answer's body.
func responseTools(u *Usage, body []byte) {
	if !bytes.Contains(body, []byte(`_call"`)) {
		return // the common case, without decoding the answer
	}
	var v struct {
		Output []responseItem `json:"output"`
	}
	_ = json.Unmarshal(body, &v)
	hostedTools(u, v.Output)
}

func (s *responsesStream) next() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	typ, data, err := s.event(false) // a final response event ends it: EOF before is a cut
	if err != nil {
		return nil, err
	}
	var ev responsesEvent
	_ = json.Unmarshal(data, &ev)
	if ev.Type == "" {
		ev.Type = typ
	}
	switch ev.Type {
	case "error":
		msg := ev.Message
		if msg == "" {
			msg = "stream error"
		}
		return nil, &UpstreamError{Status: http.StatusBadGateway, Message: msg}
	case "response.output_text.delta", "response.function_call_arguments.delta", "response.reasoning_summary_text.delta":
		s.contentSz += len(data) / 2 // the event's JSON around the text: a generous estimate
	case "response.completed", "response.incomplete", "response.failed":
		s.done, s.fail = true, ev.Type == "response.failed"
		if ev.Response != nil && ev.Response.Usage != nil {
			if u, err := usageFrom(*ev.Response.Usage); err == nil {
				s.got, s.hasUsage = u, true
			}
		}
		if ev.Response != nil {
			hostedTools(&s.got, ev.Response.Output)
		}
	}
	s.buf = appendEvent(s.buf[:0], typ, data)
	return s.buf, nil
}

func (s *responsesStream) usage() (Usage, bool) {
	if s.hasUsage {
		return s.got, true
	}
	return Usage{CompletionTokens: estimateTokens(s.contentSz)}, false
}

// failed reports whether the provider ended the stream with response.failed.
func (s *responsesStream) failed() bool { return s.fail }

// errorEvent is the Responses API's error event, which ends a stream cut off here.
func (s *responsesStream) errorEvent(body errorBody) []byte { return responsesErrorEvent(body) }

// responsesErrorEvent is the Responses API's error event for body.
func responsesErrorEvent(body errorBody) []byte {
	b, _ := json.Marshal(map[string]any{"type": "error", "code": body.Error.Type, "message": body.Error.Message, "param": body.Error.Param})
	return appendEvent(nil, "error", b)
}
