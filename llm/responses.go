package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// OpenAI's Responses API (/v1/responses) passes through to OpenAI-compatible deployments:
// the body with only model renamed, the answer byte for byte, a stream event for event,
// except for the response's ID, which callers get in the gateway's own form
// (response_ids.go); anthropic/* deployments get it translated (responses_bridge.go).
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
	// rename, when set, gives the ID callers see for the provider's response ID.
	rename func(string) string
}

// responsesEvent is the part of an event read here.
type responsesEvent struct {
	Type     string `json:"type"`
	Message  string `json:"message"` // of an error event
	Response *struct {
		ID     string           `json:"id"`
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
	if s.rename != nil && ev.Response != nil && ev.Response.ID != "" {
		data = withResponseID(data, s.rename)
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

// previousResponse reads a Responses API call's previous_response_id, which must be an ID
// the gateway gave this caller, and puts the provider's ID in body in its place. It
// returns the deployment that holds the previous response when that deployment serves the
// call's model (ds), so that the call goes there; nil when there is no
// previous_response_id or the conversation moved to another model name.
func (s *Server) previousResponse(c *Caller, body *reqBody, ds []*Deployment) (*Deployment, error) {
	const param = "previous_response_id"
	if v := body.get(param); len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	id, ok := body.text(param)
	if !ok {
		return nil, badRequest(param, "previous_response_id must be a string")
	}
	d, upstream, err := s.storedResponse(c, id, param)
	if err != nil {
		return nil, err
	}
	v, _ := json.Marshal(upstream)
	body.set(param, v)
	if slices.Contains(ds, d) {
		return d, nil
	}
	return nil, nil
}

// storedResponse returns the deployment holding the response the caller knows as id, and
// the provider's ID for it. param names the request field id came from ("" for the path).
func (s *Server) storedResponse(c *Caller, id, param string) (*Deployment, string, error) {
	notFound := func(why string) error {
		status := http.StatusNotFound
		if param != "" {
			status = http.StatusBadRequest // as OpenAI answers an unknown previous_response_id
		}
		shown := id
		if len(shown) > 200 {
			shown = shown[:200] + "..."
		}
		return &requestError{status: status, param: param, msg: fmt.Sprintf("Response with id '%s' not found: %s", shown, why)}
	}
	dep, upstream, ok := s.ids.read(c.owner(), id)
	if !ok {
		return nil, "", notFound("the gateway knows only the response IDs it returned to this key")
	}
	d := s.router.deployment(dep)
	if d == nil {
		return nil, "", notFound("the deployment that made it is no longer configured")
	}
	if d.Provider == "anthropic" { // changed since: translated calls are stored nowhere
		return nil, "", notFound("its deployment no longer serves the Responses API natively")
	}
	if _, _, err := s.modelFor(c, d.ModelName); err != nil {
		return nil, "", err
	}
	return d, upstream, nil
}

// serveStoredResponse answers GET and DELETE /v1/responses/{id} and GET
// /v1/responses/{id}/input_items from the deployment that made the response, with the
// caller's ID for it in place of the provider's.
func (s *Server) serveStoredResponse(w http.ResponseWriter, r *http.Request, sub string) error {
	ctx := r.Context()
	c := CallerFrom(ctx)
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	id := r.PathValue("id")
	d, upstream, err := s.storedResponse(c, id, "")
	if err != nil {
		return err
	}
	adm, err := s.limiter.Admit(ctx, c.Limits)
	if err != nil {
		return err
	}
	defer adm.Done(0)
	u, err := url.Parse(s.openai.endpoint(d, callResponses))
	if err != nil {
		return fmt.Errorf("deployment %s: %w", d.ID, err)
	}
	base := strings.TrimSuffix(u.Path, "/")
	u.Path, u.RawPath = base+"/"+upstream+sub, base+"/"+url.PathEscape(upstream)+sub
	q := u.Query() // Azure's api-version
	for k, vs := range r.URL.Query() {
		if k != "stream" && k != "api-version" { // answered whole, never as a stream
			q[k] = vs
		}
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header = d.credentials().Clone()
	injectTrace(ctx, req.Header)
	resp, err := s.openai.tr.client.Do(req)
	if err != nil {
		return &UpstreamError{Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return upstreamError(resp)
	}
	b, err := readAll(resp)
	if err != nil {
		return &UpstreamError{Err: err}
	}
	if sub == "" {
		b = withID(b, func(string) string { return id })
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
