package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// anthropicVersion is the Messages API version sent in anthropic-version.
const anthropicVersion = "2023-06-01"

// anthropicDefaultMaxTokens is sent when the request sets no max_tokens: the Messages API
// requires one.
const anthropicDefaultMaxTokens = 4096

// anthropicBase is where anthropic/ deployments without an api_base go.
const anthropicBase = "https://api.anthropic.com"

// anthropic translates chat completions to and from Anthropic's Messages API, tools and
// streaming included.
type anthropic struct {
	tr *transport
}

func (p *anthropic) endpoint(d *Deployment) string {
	base := strings.TrimRight(d.APIBase, "/")
	if base == "" {
		base = anthropicBase
	}
	if strings.HasSuffix(base, "/v1/messages") {
		return base
	}
	if strings.HasSuffix(base, "/v1") {
		return base + "/messages"
	}
	return base + "/v1/messages"
}

func (p *anthropic) do(ctx context.Context, d *Deployment, kind string, body *reqBody, stream bool) (*result, error) {
	if kind == callMessages {
		return p.messages(ctx, d, body, stream)
	}
	if kind != callChat {
		return nil, &requestError{status: http.StatusBadRequest, param: "model", msg: fmt.Sprintf("model %s does not support %s", d.ModelName, kind)}
	}
	req, err := toAnthropic(body, stream)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, &requestError{status: http.StatusBadRequest, param: "messages", msg: err.Error()}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	h := make(http.Header, 4)
	h.Set("x-api-key", d.APIKey)
	h.Set("anthropic-version", anthropicVersion)
	if stream {
		resp, err := post(ctx, p.tr.client, p.endpoint(d), h, "application/json", b)
		if err != nil {
			return nil, err
		}
		return &result{stream: &anthropicStream{sseBody: newSSEBody(resp.Body), model: d.ModelName, created: time.Now().Unix(), jsonMode: req.jsonMode}}, nil
	}
	raw, err := p.tr.call(ctx, d, p.endpoint(d), h, "application/json", b)
	if err != nil {
		return nil, err
	}
	var m anthropicMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Message: "unreadable Anthropic answer"}
	}
	out, u := fromAnthropic(&m, d.ModelName, req.jsonMode)
	ob, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &result{body: ob, usage: u}, nil
}

// OpenAI request shapes (only what translation reads).
type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []oaToolCall    `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

type oaToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

// Anthropic shapes.
type anBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   any             `json:"content,omitempty"`
	Source    *anSource       `json:"source,omitempty"`
	Thinking  string          `json:"thinking,omitempty"`
}

type anSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anMessage struct {
	Role    string    `json:"role"`
	Content []anBlock `json:"content"`
}

type anTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anRequest struct {
	Model         string          `json:"model"`
	Messages      []anMessage     `json:"messages"`
	System        string          `json:"system,omitempty"`
	MaxTokens     int64           `json:"max_tokens"`
	Temperature   json.RawMessage `json:"temperature,omitempty"`
	TopP          json.RawMessage `json:"top_p,omitempty"`
	TopK          json.RawMessage `json:"top_k,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Tools         []anTool        `json:"tools,omitempty"`
	ToolChoice    map[string]any  `json:"tool_choice,omitempty"`
	Metadata      map[string]any  `json:"metadata,omitempty"`

	jsonMode bool // response_format asked for JSON: the answer is jsonTool's input
}

// jsonTool is the tool a chat completion's response_format becomes: the model is made to
// call it, and its input is the answer's content, as LiteLLM translates it.
const jsonTool = "json_tool_call"

// jsonFormat turns a chat completion's response_format into r's forced jsonTool. A format
// that is not JSON leaves r as it is.
func (r *anRequest) jsonFormat(rf json.RawMessage) error {
	if len(rf) == 0 || string(rf) == "null" {
		return nil
	}
	var f struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Schema      json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(rf, &f); err != nil {
		return badRequest("response_format", "response_format must be an object with a type")
	}
	schema, desc := json.RawMessage(`{"type":"object"}`), "Respond with a JSON object."
	switch f.Type {
	case "text", "":
		return nil
	case "json_object":
	case "json_schema":
		if f.JSONSchema == nil || len(f.JSONSchema.Schema) == 0 {
			return badRequest("response_format", "response_format json_schema needs json_schema.schema")
		}
		schema = f.JSONSchema.Schema
		if f.JSONSchema.Description != "" {
			desc = f.JSONSchema.Description
		}
	default:
		return badRequest("response_format", "response_format type "+f.Type+" is not text, json_object or json_schema")
	}
	if len(r.Tools) > 0 {
		return badRequest("response_format", "response_format with tools cannot be served by this model: its JSON answer is itself a forced tool call")
	}
	r.Tools = []anTool{{Name: jsonTool, Description: desc, InputSchema: schema}}
	r.ToolChoice = map[string]any{"type": "tool", "name": jsonTool}
	r.jsonMode = true
	return nil
}

// toAnthropic translates an OpenAI chat request body to a Messages API request.
func toAnthropic(body *reqBody, stream bool) (*anRequest, error) {
	r := &anRequest{Stream: stream, MaxTokens: anthropicDefaultMaxTokens, Temperature: body.get("temperature"), TopP: body.get("top_p"), TopK: body.get("top_k")}
	_ = json.Unmarshal(body.get("model"), &r.Model)
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		var n int64
		if json.Unmarshal(body.get(k), &n) == nil && n > 0 {
			r.MaxTokens = n
		}
	}
	if s := body.get("stop"); len(s) > 0 {
		var one string
		if json.Unmarshal(s, &one) == nil {
			r.StopSequences = []string{one}
		} else {
			_ = json.Unmarshal(s, &r.StopSequences)
		}
	}
	var user string
	if json.Unmarshal(body.get("user"), &user) == nil && user != "" {
		r.Metadata = map[string]any{"user_id": user}
	}
	var msgs []oaMessage
	if err := json.Unmarshal(body.get("messages"), &msgs); err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	var system []string
	for _, m := range msgs {
		switch m.Role {
		case "system", "developer":
			t, err := textOf(m.Content, "")
			if err != nil {
				return nil, err
			}
			system = append(system, t)
		case "user", "assistant":
			blocks, err := blocksOf(m.Content)
			if err != nil {
				return nil, err
			}
			for _, tc := range m.ToolCalls {
				in := json.RawMessage(tc.Function.Arguments)
				if len(strings.TrimSpace(tc.Function.Arguments)) == 0 || !json.Valid(in) {
					in = json.RawMessage("{}")
				}
				blocks = append(blocks, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: in})
			}
			r.Messages = appendMessage(r.Messages, m.Role, blocks)
		case "tool", "function":
			t, err := textOf(m.Content, "")
			if err != nil {
				return nil, err
			}
			r.Messages = appendMessage(r.Messages, "user", []anBlock{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: t}})
		default:
			return nil, fmt.Errorf("unsupported message role %q", m.Role)
		}
	}
	r.System = strings.Join(system, "\n")
	if t := body.get("tools"); len(t) > 0 {
		var tools []oaTool
		if err := json.Unmarshal(t, &tools); err != nil {
			return nil, fmt.Errorf("tools: %w", err)
		}
		for _, tl := range tools {
			schema := tl.Function.Parameters
			if len(schema) == 0 || string(schema) == "null" {
				schema = json.RawMessage(`{"type":"object","properties":{}}`)
			}
			r.Tools = append(r.Tools, anTool{Name: tl.Function.Name, Description: tl.Function.Description, InputSchema: schema})
		}
	}
	if tc := body.get("tool_choice"); len(tc) > 0 {
		var s string
		if json.Unmarshal(tc, &s) == nil {
			switch s {
			case "auto":
				r.ToolChoice = map[string]any{"type": "auto"}
			case "required":
				r.ToolChoice = map[string]any{"type": "any"}
			case "none":
				r.ToolChoice = map[string]any{"type": "none"}
			}
		} else {
			var named struct {
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(tc, &named) == nil && named.Function.Name != "" {
				r.ToolChoice = map[string]any{"type": "tool", "name": named.Function.Name}
			}
		}
	}
	var parallel *bool
	if json.Unmarshal(body.get("parallel_tool_calls"), &parallel) == nil && parallel != nil && !*parallel && len(r.Tools) > 0 {
		if r.ToolChoice == nil {
			r.ToolChoice = map[string]any{"type": "auto"}
		}
		r.ToolChoice["disable_parallel_tool_use"] = true
	}
	if err := r.jsonFormat(body.get("response_format")); err != nil {
		return nil, err
	}
	return r, nil
}

// appendMessage adds blocks as a message, merging into the previous message when it has
// the same role (the Messages API wants turns to alternate).
func appendMessage(msgs []anMessage, role string, blocks []anBlock) []anMessage {
	if len(blocks) == 0 {
		return msgs
	}
	if n := len(msgs); n > 0 && msgs[n-1].Role == role {
		msgs[n-1].Content = append(msgs[n-1].Content, blocks...)
		return msgs
	}
	return append(msgs, anMessage{Role: role, Content: blocks})
}

// textOf returns a message content's text: the string, or its text parts (OpenAI) or text
// blocks (Anthropic) joined with sep.
func textOf(c json.RawMessage, sep string) (string, error) {
	if len(c) == 0 || string(c) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(c, &s) == nil {
		return s, nil
	}
	var parts []oaPart
	if err := json.Unmarshal(c, &parts); err != nil {
		return "", fmt.Errorf("want a string or a list of content parts: %w", err)
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" && p.Type != "" {
			continue
		}
		if i > 0 && b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// blocksOf translates message content to Anthropic content blocks.
func blocksOf(c json.RawMessage) ([]anBlock, error) {
	if len(c) == 0 || string(c) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(c, &s) == nil {
		if s == "" {
			return nil, nil
		}
		return []anBlock{{Type: "text", Text: s}}, nil
	}
	var parts []oaPart
	if err := json.Unmarshal(c, &parts); err != nil {
		return nil, fmt.Errorf("message content: %w", err)
	}
	var out []anBlock
	for _, p := range parts {
		switch p.Type {
		case "text":
			out = append(out, anBlock{Type: "text", Text: p.Text})
		case "image_url":
			u := p.ImageURL.URL
			if rest, ok := strings.CutPrefix(u, "data:"); ok {
				media, data, ok := strings.Cut(rest, ";base64,")
				if !ok {
					return nil, fmt.Errorf("image_url: only base64 data URLs are supported")
				}
				out = append(out, anBlock{Type: "image", Source: &anSource{Type: "base64", MediaType: media, Data: data}})
			} else {
				out = append(out, anBlock{Type: "image", Source: &anSource{Type: "url", URL: u}})
			}
		default:
			return nil, fmt.Errorf("unsupported content part type %q", p.Type)
		}
	}
	return out, nil
}

// anthropicMessage is a Messages API answer.
type anthropicMessage struct {
	ID         string    `json:"id"`
	Model      string    `json:"model"`
	Content    []anBlock `json:"content"`
	StopReason string    `json:"stop_reason"`
	Usage      anUsage   `json:"usage"`
}

type anUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	ServerToolUse            *struct {
		WebSearchRequests int64 `json:"web_search_requests"`
	} `json:"server_tool_use"`
	// CacheCreation splits cache_creation_input_tokens by how long the cache keeps them.
	CacheCreation *struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
}

func (u anUsage) openAI() Usage {
	in := max(u.InputTokens, 0) + max(u.CacheCreationInputTokens, 0) + max(u.CacheReadInputTokens, 0)
	out := Usage{PromptTokens: in, CompletionTokens: u.OutputTokens, TotalTokens: in + u.OutputTokens}
	if u.ServerToolUse != nil {
		out.WebSearches = u.ServerToolUse.WebSearchRequests
	}
	out.CacheReadTokens, out.CacheWriteTokens = u.CacheReadInputTokens, u.CacheCreationInputTokens
	if c := u.CacheCreation; c != nil && c.Ephemeral1h > 0 {
		out.CacheWrite1hTokens = min(c.Ephemeral1h, out.CacheWriteTokens)
		out.CacheWriteTokens -= out.CacheWrite1hTokens
	}
	return out.valid()
}

func finishReason(stop string) string {
	switch stop {
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "":
		return ""
	default: // end_turn, stop_sequence, pause_turn, refusal
		return "stop"
	}
}

type oaChoice struct {
	Index        int             `json:"index"`
	Message      *oaOutMessage   `json:"message,omitempty"`
	Delta        *oaOutMessage   `json:"delta,omitempty"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

type oaOutMessage struct {
	Role      string       `json:"role,omitempty"`
	Content   *string      `json:"content,omitempty"`
	Reasoning string       `json:"reasoning_content,omitempty"`
	ToolCalls []oaToolCall `json:"tool_calls,omitempty"`
}

type oaCompletion struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []oaChoice `json:"choices"`
	Usage   *Usage     `json:"usage,omitempty"`
}

// fromAnthropic translates a Messages API answer to a chat completion. In jsonMode, the
// forced jsonTool call's input is the content, and the answer ends as a plain one does.
func fromAnthropic(m *anthropicMessage, model string, jsonMode bool) (*oaCompletion, Usage) {
	var text strings.Builder
	msg := &oaOutMessage{Role: "assistant"}
	for _, b := range m.Content {
		switch {
		case b.Type == "text" && jsonMode: // the model's words around the call, not JSON
		case b.Type == "text":
			text.WriteString(b.Text)
		case b.Type == "thinking":
			msg.Reasoning += b.Thinking
		case b.Type == "tool_use" && jsonMode && b.Name == jsonTool:
			text.Write(b.Input)
			if m.StopReason == "tool_use" {
				m.StopReason = "end_turn"
			}
		case b.Type == "tool_use":
			tc := oaToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name = b.Name
			tc.Function.Arguments = string(b.Input)
			msg.ToolCalls = append(msg.ToolCalls, tc)
		}
	}
	t := text.String()
	msg.Content = &t
	fr := finishReason(m.StopReason)
	u := m.Usage.openAI()
	return &oaCompletion{ID: m.ID, Object: "chat.completion", Created: time.Now().Unix(), Model: model,
		Choices: []oaChoice{{Index: 0, Message: msg, FinishReason: &fr, Logprobs: json.RawMessage("null")}}, Usage: &u}, u
}

// anthropicStream translates Messages API events to chat.completion.chunk payloads.
type anthropicStream struct {
	sseBody
	anTally
	model   string
	created int64

	id       string
	toolIdx  map[int]int // content block index -> tool call index
	nTools   int
	done     bool
	jsonMode bool // the forced jsonTool call's input is streamed as content
	jsonIdx  int  // its content block index, when jsonOpen
	jsonOpen bool
}

// anTally is what an Anthropic stream has reported of its usage so far, and the size of
// the content streamed, for an estimate when it reports none.
type anTally struct {
	in        anUsage
	out       int64
	gotUsage  bool
	contentSz int
}

// delta takes a message_delta event's usage: the output so far, and what newer API
// versions report here too (input counts, server tool use, the cache write split).
func (t *anTally) delta(u *anUsage) {
	if u == nil {
		return
	}
	t.out, t.gotUsage = u.OutputTokens, true
	if u.ServerToolUse != nil {
		t.in.ServerToolUse = u.ServerToolUse
	}
	if u.CacheCreation != nil {
		t.in.CacheCreation = u.CacheCreation
	}
	t.in.InputTokens = max(t.in.InputTokens, u.InputTokens)
	t.in.CacheReadInputTokens = max(t.in.CacheReadInputTokens, u.CacheReadInputTokens)
	t.in.CacheCreationInputTokens = max(t.in.CacheCreationInputTokens, u.CacheCreationInputTokens)
}

// usage is the reported usage, or (reported false) the estimate from contentSz bytes of
// generated text.
func (t *anTally) usage() (Usage, bool) {
	u := t.in
	u.OutputTokens = t.out
	ou := u.openAI()
	if !t.gotUsage {
		if est := estimateTokens(t.contentSz); est > ou.CompletionTokens {
			ou.CompletionTokens = est
			ou.TotalTokens = ou.PromptTokens + est
		}
	}
	return ou, t.gotUsage
}

type anEvent struct {
	Type         string            `json:"type"`
	Index        int               `json:"index"`
	Message      *anthropicMessage `json:"message"`
	ContentBlock *anBlock          `json:"content_block"`
	Delta        struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		Thinking    string `json:"thinking"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anUsage       `json:"usage"`
	Error *anStreamError `json:"error"`
}

// anStreamError is the error of an Anthropic stream's error event.
type anStreamError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// upstream is the event's error as the provider's; e may be nil (an error event without one).
func (e *anStreamError) upstream() error {
	msg := "stream error"
	if e != nil && e.Message != "" {
		msg = e.Message
	}
	return &UpstreamError{Status: http.StatusBadGateway, Message: msg}
}

func (s *anthropicStream) chunk(delta *oaOutMessage, finish *string, u *Usage) ([]byte, error) {
	c := oaCompletion{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: []oaChoice{{Index: 0, Delta: delta, FinishReason: finish, Logprobs: json.RawMessage("null")}}, Usage: u}
	return json.Marshal(c)
}

func (s *anthropicStream) next() ([]byte, error) {
	for {
		if s.done {
			return nil, io.EOF
		}
		typ, data, err := s.event(false) // message_stop ends it: EOF before is a cut
		if err != nil {
			return nil, err
		}
		var ev anEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			continue
		}
		if ev.Type == "" {
			ev.Type = typ
		}
		switch ev.Type {
		case "message_start":
			if ev.Message != nil {
				s.id = ev.Message.ID
				s.in = ev.Message.Usage
				s.out = ev.Message.Usage.OutputTokens
			}
			empty := ""
			return s.chunk(&oaOutMessage{Role: "assistant", Content: &empty}, nil, nil)
		case "content_block_start":
			if s.jsonMode && ev.ContentBlock != nil && ev.ContentBlock.Type == "tool_use" && ev.ContentBlock.Name == jsonTool {
				s.jsonIdx, s.jsonOpen = ev.Index, true
				continue
			}
			if ev.ContentBlock != nil && ev.ContentBlock.Type == "tool_use" {
				if s.toolIdx == nil {
					s.toolIdx = map[int]int{}
				}
				s.toolIdx[ev.Index] = s.nTools
				i := s.nTools
				s.nTools++
				tc := oaToolCall{Index: &i, ID: ev.ContentBlock.ID, Type: "function"}
				tc.Function.Name = ev.ContentBlock.Name
				s.contentSz += len(tc.Function.Name)
				return s.chunk(&oaOutMessage{ToolCalls: []oaToolCall{tc}}, nil, nil)
			}
		case "content_block_delta":
			if s.jsonOpen && ev.Index == s.jsonIdx && ev.Delta.Type == "input_json_delta" {
				t := ev.Delta.PartialJSON
				s.contentSz += len(t)
				return s.chunk(&oaOutMessage{Content: &t}, nil, nil)
			}
			if s.jsonMode && ev.Delta.Type == "text_delta" {
				continue // the model's words around the call, not JSON
			}
			switch ev.Delta.Type {
			case "text_delta":
				t := ev.Delta.Text
				s.contentSz += len(t)
				return s.chunk(&oaOutMessage{Content: &t}, nil, nil)
			case "thinking_delta":
				s.contentSz += len(ev.Delta.Thinking)
				return s.chunk(&oaOutMessage{Reasoning: ev.Delta.Thinking}, nil, nil)
			case "input_json_delta":
				i := s.toolIdx[ev.Index]
				tc := oaToolCall{Index: &i}
				tc.Function.Arguments = ev.Delta.PartialJSON
				s.contentSz += len(ev.Delta.PartialJSON)
				return s.chunk(&oaOutMessage{ToolCalls: []oaToolCall{tc}}, nil, nil)
			}
		case "message_delta":
			s.delta(ev.Usage)
			fr := finishReason(ev.Delta.StopReason)
			if s.jsonOpen && fr == "tool_calls" && s.nTools == 0 {
				fr = "stop"
			}
			u, _ := s.usage()
			return s.chunk(&oaOutMessage{}, &fr, &u)
		case "message_stop":
			s.done = true
			return nil, io.EOF
		case "error":
			return nil, ev.Error.upstream()
		}
	}
}

// notNative is the error for a Messages API call routed to a deployment that does not
// speak it.
func notNative(d *Deployment) error {
	return &requestError{status: http.StatusBadRequest, param: "model",
		msg: fmt.Sprintf("model %s (%s) cannot take a Messages API request untranslated", d.ModelName, d.Provider)}
}

// messages sends a Messages API request as it came (model already the deployment's), with
// the caller's anthropic-version and anthropic-beta, and returns the answer as it came.
func (p *anthropic) messages(ctx context.Context, d *Deployment, body *reqBody, stream bool) (*result, error) {
	b, _ := body.encode()
	h := messagesHeader(d, body)
	if stream {
		h.Set("Accept", "text/event-stream")
		resp, err := post(ctx, p.tr.client, p.endpoint(d), h, "application/json", b)
		if err != nil {
			return nil, err
		}
		return &result{native: true, stream: &messagesStream{sseBody: newSSEBody(resp.Body)}}, nil
	}
	raw, err := p.tr.call(ctx, d, p.endpoint(d), h, "application/json", b)
	if err != nil {
		return nil, err
	}
	var m struct {
		Usage anUsage `json:"usage"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Message: "unreadable Anthropic answer"}
	}
	return &result{native: true, body: raw, usage: m.Usage.openAI()}, nil
}

// messagesHeader is the header of a Messages API request to d: its key, and the caller's
// anthropic-version and anthropic-beta.
func messagesHeader(d *Deployment, body *reqBody) http.Header {
	h := make(http.Header, 4)
	h.Set("x-api-key", d.APIKey)
	h.Set("anthropic-version", anthropicVersion)
	if v := body.header.Get("anthropic-version"); v != "" {
		h.Set("anthropic-version", v)
	}
	if v := body.header.Values("anthropic-beta"); len(v) > 0 {
		h["Anthropic-Beta"] = v
	}
	return h
}

// countTokens sends a count_tokens request as it came and returns the answer as it came.
func (p *anthropic) countTokens(ctx context.Context, d *Deployment, body *reqBody) ([]byte, error) {
	b, _ := body.encode()
	return p.tr.call(ctx, d, p.endpoint(d)+"/count_tokens", messagesHeader(d, body), "application/json", b)
}

// messagesStream passes a Messages API stream through event by event, reading the usage
// from message_start (input) and message_delta (output).
type messagesStream struct {
	sseBody
	anTally
	buf  []byte
	done bool
}

func (s *messagesStream) next() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	typ, data, err := s.event(false) // message_stop ends it: EOF before is a cut
	if err != nil {
		return nil, err
	}
	var ev struct {
		Type    string `json:"type"`
		Message *struct {
			Usage anUsage `json:"usage"`
		} `json:"message"`
		Usage *anUsage       `json:"usage"`
		Error *anStreamError `json:"error"`
	}
	_ = json.Unmarshal(data, &ev)
	if ev.Type == "" {
		ev.Type = typ
	}
	switch ev.Type {
	case "error":
		return nil, ev.Error.upstream()
	case "message_start":
		if ev.Message != nil {
			s.in, s.out = ev.Message.Usage, ev.Message.Usage.OutputTokens
		}
	case "content_block_delta":
		s.contentSz += len(data) / 2 // the event's JSON around the text: a generous estimate
	case "message_delta":
		s.delta(ev.Usage)
	case "message_stop":
		s.done = true
	}
	s.buf = appendEvent(s.buf[:0], typ, data)
	return s.buf, nil
}
