package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
)

// The Responses API on models that do not serve it (anthropic/* deployments): the request
// becomes the equivalent chat completion, which the deployment's provider translates as it
// translates any, and the answer, plain or streamed, comes back as a Responses API answer.
// What a chat completion cannot carry (hosted tools, files, stored state, structured output
// formats) is refused with a 400 naming it.

// rRequest is the part of a Responses API request translated to a chat completion.
type rRequest struct {
	Instructions      string          `json:"instructions"`
	Input             json.RawMessage `json:"input"`
	Tools             []rTool         `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	MaxOutputTokens   *int64          `json:"max_output_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Stream            bool            `json:"stream"`
	User              string          `json:"user"`
	PreviousID        string          `json:"previous_response_id"`
	Text              *struct {
		Format *struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Schema      json.RawMessage `json:"schema"`
			Strict      *bool           `json:"strict"`
		} `json:"format"`
	} `json:"text"`
}

type rTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// rItem is one input item: a message (type "message", or none with a role), a function
// call the model made, or its output.
type rItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// bridgeChat is the chat completion a Responses API request becomes.
type bridgeChat struct {
	chatRequest
	ParallelToolCalls *bool          `json:"parallel_tool_calls,omitempty"`
	User              string         `json:"user,omitempty"`
	ResponseFormat    map[string]any `json:"response_format,omitempty"`
}

// responsesToChat translates a Responses API request body to a chat completion body
// (model left out: the router sets it). Errors are the caller's: they name the field.
func responsesToChat(body *reqBody) (*reqBody, error) {
	var in rRequest
	b, _ := body.encode()
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, badRequest("input", "responses request: "+err.Error())
	}
	if in.PreviousID != "" {
		return nil, badRequest("previous_response_id", "previous_response_id needs a model that keeps responses; this one is served through translation: send the whole conversation in input")
	}
	out := bridgeChat{chatRequest: chatRequest{MaxTokens: in.MaxOutputTokens, Temperature: in.Temperature, TopP: in.TopP, Stream: in.Stream},
		ParallelToolCalls: in.ParallelToolCalls, User: in.User}
	if in.Text != nil && in.Text.Format != nil { // chat completions' response_format, in another shape
		switch f := in.Text.Format; f.Type {
		case "", "text":
		case "json_object":
			out.ResponseFormat = map[string]any{"type": "json_object"}
		case "json_schema":
			out.ResponseFormat = map[string]any{"type": "json_schema", "json_schema": map[string]any{
				"name": f.Name, "description": f.Description, "schema": f.Schema, "strict": f.Strict}}
		default:
			return nil, badRequest("text", "text.format "+f.Type+" is not text, json_object or json_schema")
		}
	}
	if in.Stream {
		out.StreamOptions = &map[string]any{"include_usage": true} // the usage to charge
	}
	if in.Instructions != "" {
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: in.Instructions})
	}
	msgs, err := inputMessages(in.Input)
	if err != nil {
		return nil, err
	}
	out.Messages = append(out.Messages, msgs...)
	for _, t := range in.Tools {
		if t.Type != "function" {
			return nil, badRequest("tools", fmt.Sprintf("tool type %s is run by OpenAI and cannot be served by this model", t.Type))
		}
		var ot oaTool
		ot.Type = "function"
		ot.Function.Name, ot.Function.Description, ot.Function.Parameters = t.Name, t.Description, t.Parameters
		out.Tools = append(out.Tools, ot)
	}
	if tc := in.ToolChoice; len(tc) > 0 && string(tc) != "null" {
		var mode string
		var named struct{ Type, Name string }
		switch {
		case json.Unmarshal(tc, &mode) == nil && (mode == "auto" || mode == "none" || mode == "required"):
			out.ToolChoice = mode
		case json.Unmarshal(tc, &named) == nil && named.Type == "function" && named.Name != "":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]any{"name": named.Name}}
		default:
			return nil, badRequest("tool_choice", "tool_choice must be auto, none, required or a function")
		}
	}
	cb, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return parseBody(cb)
}

// inputMessages translates a Responses API input (a string, or a list of items) to chat
// messages. A model's function calls become one assistant message's tool calls.
func inputMessages(input json.RawMessage) ([]chatMessage, error) {
	var s string
	if json.Unmarshal(input, &s) == nil {
		return []chatMessage{{Role: "user", Content: s}}, nil
	}
	var items []rItem
	if err := json.Unmarshal(input, &items); err != nil || len(items) == 0 {
		return nil, badRequest("input", "input must be a string or a list of items")
	}
	var out []chatMessage
	for i, it := range items {
		switch {
		case it.Type == "message" || (it.Type == "" && it.Role != ""):
			m, err := inputMessage(it)
			if err != nil {
				return nil, badRequest("input", fmt.Sprintf("input[%d]: %v", i, err))
			}
			out = append(out, m)
		case it.Type == "function_call":
			tc := oaToolCall{ID: it.CallID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = it.Name, it.Arguments
			if n := len(out); n > 0 && out[n-1].Role == "assistant" && (len(out[n-1].ToolCalls) > 0 || out[n-1].Content != nil) {
				out[n-1].ToolCalls = append(out[n-1].ToolCalls, tc)
			} else {
				out = append(out, chatMessage{Role: "assistant", ToolCalls: []oaToolCall{tc}})
			}
		case it.Type == "function_call_output":
			text, err := outputText(it.Output)
			if err != nil {
				return nil, badRequest("input", fmt.Sprintf("input[%d]: %v", i, err))
			}
			out = append(out, chatMessage{Role: "tool", ToolCallID: it.CallID, Content: text})
		case it.Type == "reasoning":
			// The model's own reasoning, which a chat completion has no place for.
		default:
			return nil, badRequest("input", fmt.Sprintf("input[%d]: item type %s cannot be sent to this model", i, it.Type))
		}
	}
	return out, nil
}

// inputMessage translates one message item: its text, and images for user messages.
func inputMessage(it rItem) (chatMessage, error) {
	role := it.Role
	switch role {
	case "user", "assistant", "system":
	case "developer":
		role = "system"
	default:
		return chatMessage{}, fmt.Errorf("role %q is not user, assistant, system or developer", it.Role)
	}
	var s string
	if json.Unmarshal(it.Content, &s) == nil {
		return chatMessage{Role: role, Content: s}, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL string `json:"image_url"`
	}
	if err := json.Unmarshal(it.Content, &parts); err != nil {
		return chatMessage{}, errors.New("content must be a string or a list of parts")
	}
	var out []map[string]any
	var text []string
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			out = append(out, map[string]any{"type": "text", "text": p.Text})
			text = append(text, p.Text)
		case "input_image":
			if p.ImageURL == "" {
				return chatMessage{}, errors.New("input_image needs an image_url (file ids are OpenAI's)")
			}
			out = append(out, map[string]any{"type": "image_url", "image_url": map[string]any{"url": p.ImageURL}})
		default:
			return chatMessage{}, fmt.Errorf("content part type %s cannot be sent to this model", p.Type)
		}
	}
	if role != "user" { // only user messages carry parts other than text
		return chatMessage{Role: role, Content: strings.Join(text, "")}, nil
	}
	return chatMessage{Role: role, Content: out}, nil
}

// outputText is a function call output's text: a string, or the text of a list of parts.
func outputText(o json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(o, &s) == nil {
		return s, nil
	}
	var parts []struct{ Type, Text string }
	if err := json.Unmarshal(o, &parts); err != nil {
		return "", errors.New("output must be a string or a list of parts")
	}
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// responseObject is a Responses API answer built from a chat completion's parts.
func responseObject(id string, created int64, model, status string, output []any, u Usage) map[string]any {
	var incomplete any
	if status == "incomplete" {
		incomplete = map[string]any{"reason": "max_output_tokens"}
	}
	if output == nil {
		output = []any{}
	}
	return map[string]any{"id": id, "object": "response", "created_at": created, "status": status, "model": model,
		"incomplete_details": incomplete, "error": nil, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
		"tools": []any{}, "text": map[string]any{"format": map[string]any{"type": "text"}}, "metadata": map[string]any{},
		"usage": map[string]any{"input_tokens": u.PromptTokens, "input_tokens_details": map[string]any{"cached_tokens": u.CacheReadTokens},
			"output_tokens": u.CompletionTokens, "output_tokens_details": map[string]any{"reasoning_tokens": 0},
			"total_tokens": u.PromptTokens + u.CompletionTokens}}
}

func messageItem(id, text, status string) map[string]any {
	return map[string]any{"type": "message", "id": id, "status": status, "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}
}

func functionCallItem(callID, name, args, status string) map[string]any {
	return map[string]any{"type": "function_call", "id": "fc_" + callID, "call_id": callID, "name": name, "arguments": args, "status": status}
}

// responseStatus is the status a chat completion's finish_reason makes.
func responseStatus(finish string) string {
	if finish == "length" {
		return "incomplete"
	}
	return "completed"
}

// chatAsResponse turns a chat completion answer (streamed or not) into a Responses API
// one, for the caller's model name.
func chatAsResponse(r *result, model string) (*result, error) {
	if r.stream != nil {
		id := "resp_" + strings.ReplaceAll(budget.NewID(), "-", "")
		return &result{native: true, stream: &responseEventStream{chatDeltas: chatDeltas{inner: r.stream}, model: model, id: id, created: time.Now().Unix()}}, nil
	}
	c, err := readChatAnswer(r.body)
	if err != nil {
		return nil, err
	}
	var output []any
	if c.content != "" {
		output = append(output, messageItem("msg_"+c.id, c.content, "completed"))
	}
	for _, tc := range c.calls {
		output = append(output, functionCallItem(tc.ID, tc.Function.Name, tc.Function.Arguments, "completed"))
	}
	b, err := json.Marshal(responseObject("resp_"+c.id, c.created, model, responseStatus(c.finish), output, r.usage))
	if err != nil {
		return nil, err
	}
	return &result{native: true, body: b, usage: r.usage}, nil
}

// responseEventStream turns a chat completion stream into the Responses API's events: the
// response created, an output item per run of text and per tool call (added, its deltas,
// done), and the response completed with its output and usage.
type responseEventStream struct {
	chatDeltas
	model   string
	id      string // the response's, unique
	created int64

	started bool
	seq     int
	output  []any  // finished items
	open    string // "", "message" or "function_call"
	text    strings.Builder
	call    struct {
		id, name string
		args     strings.Builder
	}
	finished bool
	buf      []byte
}

func (s *responseEventStream) event(typ string, v map[string]any) {
	v["type"], v["sequence_number"] = typ, s.seq
	s.seq++
	b, _ := json.Marshal(v)
	s.buf = appendEvent(s.buf, typ, b)
}

// closeItem finishes the open output item.
func (s *responseEventStream) closeItem() {
	idx := len(s.output)
	switch s.open {
	case "message":
		t := s.text.String()
		itemID := fmt.Sprintf("msg_%d", idx)
		s.event("response.output_text.done", map[string]any{"item_id": itemID, "output_index": idx, "content_index": 0, "text": t})
		s.event("response.content_part.done", map[string]any{"item_id": itemID, "output_index": idx, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": t, "annotations": []any{}}})
		item := messageItem(itemID, t, "completed")
		s.event("response.output_item.done", map[string]any{"output_index": idx, "item": item})
		s.output = append(s.output, item)
		s.text.Reset()
	case "function_call":
		args := s.call.args.String()
		item := functionCallItem(s.call.id, s.call.name, args, "completed")
		s.event("response.function_call_arguments.done", map[string]any{"item_id": item["id"], "output_index": idx, "arguments": args})
		s.event("response.output_item.done", map[string]any{"output_index": idx, "item": item})
		s.output = append(s.output, item)
		s.call.args.Reset()
	}
	s.open = ""
}

func (s *responseEventStream) next() ([]byte, error) {
	if s.finished {
		return nil, io.EOF
	}
	s.buf = s.buf[:0]
	if !s.started {
		s.started = true
		r := responseObject(s.id, s.created, s.model, "in_progress", nil, Usage{})
		r["usage"] = nil
		s.event("response.created", map[string]any{"response": r})
		s.event("response.in_progress", map[string]any{"response": r})
	}
	for len(s.buf) == 0 {
		runs, err := s.deltas()
		if errors.Is(err, io.EOF) {
			s.closeItem()
			u, _ := s.inner.usage()
			s.event("response.completed", map[string]any{"response": responseObject(s.id, s.created, s.model, responseStatus(s.finish), s.output, u)})
			s.finished = true
			return s.buf, nil
		}
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			idx := len(s.output)
			switch {
			case r.call != nil:
				s.closeItem()
				s.open, s.call.id, s.call.name = "function_call", r.call.ID, r.call.Function.Name
				s.event("response.output_item.added", map[string]any{"output_index": len(s.output),
					"item": functionCallItem(r.call.ID, r.call.Function.Name, "", "in_progress")})
			case r.args != "":
				s.call.args.WriteString(r.args)
				s.event("response.function_call_arguments.delta", map[string]any{"item_id": "fc_" + s.call.id, "output_index": idx, "delta": r.args})
			case r.text != "":
				if s.open != "message" {
					s.closeItem()
					idx = len(s.output)
					s.open = "message"
					s.event("response.output_item.added", map[string]any{"output_index": idx, "item": map[string]any{
						"type": "message", "id": fmt.Sprintf("msg_%d", idx), "status": "in_progress", "role": "assistant", "content": []any{}}})
					s.event("response.content_part.added", map[string]any{"item_id": fmt.Sprintf("msg_%d", idx), "output_index": idx, "content_index": 0,
						"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
				}
				s.text.WriteString(r.text)
				s.event("response.output_text.delta", map[string]any{"item_id": fmt.Sprintf("msg_%d", idx), "output_index": idx, "content_index": 0, "delta": r.text})
			}
		}
	}
	return s.buf, nil
}

func (s *responseEventStream) usage() (Usage, bool) { return s.inner.usage() }
func (s *responseEventStream) pending() bool        { return s.inner.pending() }
func (s *responseEventStream) close() error         { return s.inner.close() }

// errorEvent is the Responses API's error event, which ends a stream cut off here.
func (s *responseEventStream) errorEvent(body errorBody) []byte { return responsesErrorEvent(body) }
