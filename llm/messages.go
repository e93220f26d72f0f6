package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// This file serves /v1/messages (Anthropic's Messages API) from deployments that speak
// OpenAI's chat completions: the request is translated to a chat completion, and the
// answer, streamed or not, back to a Messages API answer. anthropic/* deployments need no
// translation (anthropic.messages).

// mRequest is the part of a Messages API request that translation reads.
type mRequest struct {
	MaxTokens     *int64          `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      []anMessageIn   `json:"messages"`
	Tools         []mTool         `json:"tools"`
	ToolChoice    *mToolChoice    `json:"tool_choice"`
	StopSequences []string        `json:"stop_sequences"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Stream        bool            `json:"stream"`
}

type anMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type mTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type mToolChoice struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// mBlock is a content block of a request message.
type mBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
	Source    *anSource       `json:"source"`
}

// chatRequest is the chat completion a Messages API request becomes.
type chatRequest struct {
	Messages      []chatMessage   `json:"messages"`
	MaxTokens     *int64          `json:"max_tokens,omitempty"`
	Tools         []oaTool        `json:"tools,omitempty"`
	ToolChoice    any             `json:"tool_choice,omitempty"`
	Stop          []string        `json:"stop,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	StreamOptions *map[string]any `json:"stream_options,omitempty"`
}

type chatMessage struct {
	Role       string       `json:"role"`
	Content    any          `json:"content"` // string, []oaPart-like maps, or nil
	ToolCalls  []oaToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
}

// messagesToChat translates a Messages API request body to a chat completion body (model
// left out: the router sets it). Errors are the caller's: they name the field.
func messagesToChat(body *reqBody) (*reqBody, error) {
	var in mRequest
	b, _ := body.encode()
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, badRequest("messages", "messages request: "+err.Error())
	}
	out := chatRequest{MaxTokens: in.MaxTokens, Stop: in.StopSequences, Temperature: in.Temperature, TopP: in.TopP, Stream: in.Stream}
	if in.Stream {
		out.StreamOptions = &map[string]any{"include_usage": true} // the usage to charge
	}
	if sys, err := textOf(in.System, "\n"); err != nil {
		return nil, badRequest("system", "system: "+err.Error())
	} else if sys != "" {
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: sys})
	}
	for i, m := range in.Messages {
		msgs, err := chatMessages(m)
		if err != nil {
			return nil, badRequest("messages", fmt.Sprintf("messages[%d]: %v", i, err))
		}
		out.Messages = append(out.Messages, msgs...)
	}
	for _, t := range in.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, badRequest("tools", fmt.Sprintf("tool %q: type %s is Anthropic's own and cannot be served by this model", t.Name, t.Type))
		}
		var ot oaTool
		ot.Type = "function"
		ot.Function.Name, ot.Function.Description, ot.Function.Parameters = t.Name, t.Description, t.InputSchema
		out.Tools = append(out.Tools, ot)
	}
	if tc := in.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto":
			out.ToolChoice = "auto"
		case "any":
			out.ToolChoice = "required"
		case "none":
			out.ToolChoice = "none"
		case "tool":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]any{"name": tc.Name}}
		default:
			return nil, badRequest("tool_choice", "tool_choice type "+tc.Type+" is not one of auto, any, tool, none")
		}
	}
	cb, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return parseBody(cb)
}

// chatMessages translates one Messages API message. A user message's tool results become
// tool messages, placed first: chat completions want them right after the assistant's
// tool calls. A chat completion's tool message carries text only, so images a tool
// returned (a screenshot, an image file read) go in the user message that follows, each
// after a line naming its tool call.
func chatMessages(m anMessageIn) ([]chatMessage, error) {
	switch m.Role {
	case "user", "assistant":
	case "system": // newer API versions (and Claude Code) send system messages mid-conversation
		text, err := textOf(m.Content, "\n")
		if err != nil {
			return nil, fmt.Errorf("system message: %v", err)
		}
		return []chatMessage{{Role: "system", Content: text}}, nil
	default:
		return nil, fmt.Errorf("role %q is not user, assistant or system", m.Role)
	}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return []chatMessage{{Role: m.Role, Content: s}}, nil
	}
	var blocks []mBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		return nil, errors.New("content must be a string or a list of content blocks")
	}
	var out, tools []chatMessage
	var parts, toolImages []map[string]any
	var text []string
	var calls []oaToolCall
	for _, b := range blocks {
		switch b.Type {
		case "text":
			parts = append(parts, map[string]any{"type": "text", "text": b.Text})
			text = append(text, b.Text)
		case "image":
			p, err := imagePart(b)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case "tool_use":
			var tc oaToolCall
			tc.ID, tc.Type = b.ID, "function"
			tc.Function.Name = b.Name
			tc.Function.Arguments = "{}"
			if len(b.Input) > 0 && string(b.Input) != "null" {
				tc.Function.Arguments = string(b.Input)
			}
			calls = append(calls, tc)
		case "tool_result":
			res, err := textOf(b.Content, "\n")
			if err != nil {
				return nil, fmt.Errorf("tool_result %s: %v", b.ToolUseID, err)
			}
			imgs, err := resultImages(b.Content)
			if err != nil {
				return nil, fmt.Errorf("tool_result %s: %v", b.ToolUseID, err)
			}
			if len(imgs) > 0 && res == "" {
				res = "(the result is the image in the next message)"
			}
			if b.IsError {
				res = "Error: " + res
			}
			tools = append(tools, chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: res})
			for _, img := range imgs {
				toolImages = append(toolImages, map[string]any{"type": "text", "text": "Image returned by tool call " + b.ToolUseID + ":"}, img)
			}
		case "thinking", "redacted_thinking":
			// The model's own reasoning, which a chat completion has no place for.
		default:
			return nil, fmt.Errorf("content block type %q cannot be sent to this model", b.Type)
		}
	}
	out = append(out, tools...)
	parts = append(toolImages, parts...)
	switch {
	case m.Role == "assistant":
		var content any
		if len(text) > 0 {
			content = strings.Join(text, "")
		}
		if content != nil || len(calls) > 0 {
			out = append(out, chatMessage{Role: "assistant", Content: content, ToolCalls: calls})
		}
	case len(parts) > 0:
		out = append(out, chatMessage{Role: "user", Content: parts})
	}
	return out, nil
}

// imagePart translates an image block to a chat completion's image_url part.
func imagePart(b mBlock) (map[string]any, error) {
	if b.Source == nil {
		return nil, errors.New("image block without a source")
	}
	url := b.Source.URL
	if b.Source.Type == "base64" {
		url = "data:" + b.Source.MediaType + ";base64," + b.Source.Data
	}
	return map[string]any{"type": "image_url", "image_url": map[string]any{"url": url}}, nil
}

// resultImages returns the image parts of a tool_result's content (a string has none).
func resultImages(c json.RawMessage) ([]map[string]any, error) {
	var blocks []mBlock
	if len(c) == 0 || c[0] != '[' || json.Unmarshal(c, &blocks) != nil {
		return nil, nil // a string, or content textOf has already refused
	}
	var out []map[string]any
	for _, b := range blocks {
		if b.Type == "image" {
			p, err := imagePart(b)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// stopReason maps a chat completion's finish_reason to a Messages API stop_reason.
func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	default:
		return "end_turn"
	}
}

// chatAnswer is what the translations read of a chat completion answer: its first choice.
type chatAnswer struct {
	id      string
	created int64
	content string
	calls   []oaToolCall
	finish  string
}

func readChatAnswer(body []byte) (*chatAnswer, error) {
	var c struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Choices []struct {
			Message struct {
				Content   *string      `json:"content"`
				ToolCalls []oaToolCall `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Message: "unreadable chat completion"}
	}
	ch := c.Choices[0]
	a := &chatAnswer{id: c.ID, created: c.Created, calls: ch.Message.ToolCalls, finish: ch.FinishReason}
	if ch.Message.Content != nil {
		a.content = *ch.Message.Content
	}
	return a, nil
}

// chatAsMessages turns a chat completion answer (streamed or not) into a Messages API one,
// for the caller's model name.
func chatAsMessages(r *result, model string) (*result, error) {
	if r.stream != nil {
		return &result{native: true, stream: &chatEventStream{chatDeltas: chatDeltas{inner: r.stream}, model: model}}, nil
	}
	c, err := readChatAnswer(r.body)
	if err != nil {
		return nil, err
	}
	content := []map[string]any{}
	if c.content != "" {
		content = append(content, map[string]any{"type": "text", "text": c.content})
	}
	for _, tc := range c.calls {
		content = append(content, map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Function.Name, "input": toolInput(tc.Function.Arguments)})
	}
	out := map[string]any{"id": messageID(c.id), "type": "message", "role": "assistant", "model": model, "content": content,
		"stop_reason": stopReason(c.finish), "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": r.usage.PromptTokens, "output_tokens": r.usage.CompletionTokens}}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &result{native: true, body: b, usage: r.usage}, nil
}

// toolInput is a tool call's arguments as a JSON object; arguments that are not one are
// passed as {"arguments": "<as sent>"} rather than dropped.
func toolInput(args string) json.RawMessage {
	a := bytes.TrimSpace([]byte(args))
	if len(a) == 0 {
		return json.RawMessage("{}")
	}
	if len(a) > 0 && a[0] == '{' && json.Valid(a) {
		return a
	}
	b, _ := json.Marshal(map[string]string{"arguments": args})
	return b
}

func messageID(id string) string {
	if id == "" {
		return "msg_toolgate"
	}
	return "msg_" + strings.TrimPrefix(id, "chatcmpl-")
}

// chatEventStream turns a chat completion stream into Messages API events: message_start,
// a content block per run of text and per tool call (start, deltas, stop), then
// message_delta with the stop reason and usage, and message_stop.
type chatEventStream struct {
	chatDeltas
	model string

	started  bool
	open     string // type of the open content block: "", "text" or "tool_use"
	index    int    // index of the open (or next) content block
	finished bool
	buf      []byte
}

func (s *chatEventStream) event(typ string, v any) {
	b, _ := json.Marshal(v)
	s.buf = appendEvent(s.buf, typ, b)
}

func (s *chatEventStream) closeBlock() {
	if s.open != "" {
		s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": s.index})
		s.open = ""
		s.index++
	}
}

func (s *chatEventStream) next() ([]byte, error) {
	if s.finished {
		return nil, io.EOF
	}
	s.buf = s.buf[:0]
	if !s.started {
		s.started = true
		s.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
			"id": "msg_toolgate", "type": "message", "role": "assistant", "model": s.model, "content": []any{},
			"stop_reason": nil, "stop_sequence": nil, "usage": map[string]any{"input_tokens": 0, "output_tokens": 0}}})
	}
	for len(s.buf) == 0 {
		runs, err := s.deltas()
		if errors.Is(err, io.EOF) {
			s.closeBlock()
			u, _ := s.inner.usage()
			s.event("message_delta", map[string]any{"type": "message_delta",
				"delta": map[string]any{"stop_reason": stopReason(s.finish), "stop_sequence": nil},
				"usage": map[string]any{"input_tokens": u.PromptTokens, "output_tokens": u.CompletionTokens}})
			s.event("message_stop", map[string]any{"type": "message_stop"})
			s.finished = true
			return s.buf, nil
		}
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			switch {
			case r.call != nil:
				s.closeBlock()
				s.open = "tool_use"
				s.event("content_block_start", map[string]any{"type": "content_block_start", "index": s.index,
					"content_block": map[string]any{"type": "tool_use", "id": r.call.ID, "name": r.call.Function.Name, "input": map[string]any{}}})
			case r.args != "":
				s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": s.index,
					"delta": map[string]any{"type": "input_json_delta", "partial_json": r.args}})
			case r.text != "":
				if s.open != "text" {
					s.closeBlock()
					s.open = "text"
					s.event("content_block_start", map[string]any{"type": "content_block_start", "index": s.index,
						"content_block": map[string]any{"type": "text", "text": ""}})
				}
				s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": s.index,
					"delta": map[string]any{"type": "text_delta", "text": r.text}})
			}
		}
	}
	return s.buf, nil
}

// chatDeltas reads a chat completion stream for a translation: each chunk's text, the start
// of each tool call (one however its chunks split it: by index, or by id for servers that
// repeat it in every chunk) and its arguments, and the finish reason.
type chatDeltas struct {
	inner   chunkStream
	inCall  bool
	callIdx int
	callID  string
	finish  string
}

// chatRun is one part of a chunk: text, a tool call's start, or its arguments.
type chatRun struct {
	text string
	call *oaToolCall
	args string
}

// deltas returns the runs of the next chunk that has a choice (the usage chunk has none),
// in order, or io.EOF at the end.
func (c *chatDeltas) deltas() ([]chatRun, error) {
	for {
		data, err := c.inner.next()
		if err != nil {
			return nil, err
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   *string      `json:"content"`
					ToolCalls []oaToolCall `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &ch); err != nil {
			return nil, &UpstreamError{Status: http.StatusBadGateway, Message: "unreadable chat completion chunk"}
		}
		if len(ch.Choices) == 0 {
			continue
		}
		d := ch.Choices[0]
		var runs []chatRun
		if t := d.Delta.Content; t != nil && *t != "" {
			runs = append(runs, chatRun{text: *t})
			c.inCall = false
		}
		for _, tc := range d.Delta.ToolCalls {
			idx := 0
			if tc.Index != nil {
				idx = *tc.Index
			}
			if !c.inCall || idx != c.callIdx || (tc.ID != "" && tc.ID != c.callID) {
				c.inCall, c.callIdx, c.callID = true, idx, tc.ID
				runs = append(runs, chatRun{call: &tc})
			}
			if tc.Function.Arguments != "" {
				runs = append(runs, chatRun{args: tc.Function.Arguments})
			}
		}
		if f := d.FinishReason; f != nil && *f != "" {
			c.finish = *f
		}
		return runs, nil
	}
}

func (s *chatEventStream) usage() (Usage, bool) { return s.inner.usage() }
func (s *chatEventStream) pending() bool        { return s.inner.pending() }
func (s *chatEventStream) close() error         { return s.inner.close() }

// serveCountTokens is POST /v1/messages/count_tokens: the token count of a Messages API
// request, from the provider for a model with an anthropic/* deployment and estimated
// (one token per three bytes of messages, system and tools, as reservations do) for
// others. It is not charged; the caller's rate limits count it as a request.
func (s *Server) serveCountTokens(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := CallerFrom(ctx)
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	body, err := s.readBody(w, r, callMessages)
	if err != nil {
		return err
	}
	if !c.AllowClientSideCredentials {
		if err := refuseCredentials(body); err != nil {
			return err
		}
	}
	model, _ := body.text("model")
	if model == "" {
		return badRequest("model", "model is required")
	}
	_, ds, err := s.modelFor(c, model)
	if err != nil {
		return err
	}
	adm, err := s.limiter.Admit(ctx, c.Limits)
	if err != nil {
		return err
	}
	defer adm.Done(0)
	for _, d := range ds {
		if an, ok := d.prov.(*anthropic); ok {
			out := body.forward(gatewayOnly)
			out.header = r.Header
			out.set("model", d.modelField())
			raw, err := an.countTokens(ctx, d, out)
			if err != nil {
				return err
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(raw)
			return nil
		}
	}
	n := promptTokens(len(body.get("messages"))) + promptTokens(len(body.get("system"))) + promptTokens(len(body.get("tools")))
	writeJSON(w, http.StatusOK, map[string]int64{"input_tokens": n})
	return nil
}
