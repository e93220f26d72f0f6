package llm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// requestError is an error with a status and a message safe for clients.
type requestError struct {
	status int
	typ    string // "" derives from status
	param  string
	msg    string
	err    error // cause, logged only
}

func (e *requestError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *requestError) Unwrap() error { return e.err }

func badRequest(param, msg string) *requestError {
	return &requestError{status: http.StatusBadRequest, param: param, msg: msg}
}

// errorBody is OpenAI's (and LiteLLM's) error envelope.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

func typeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "auth_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusRequestTimeout:
		return "timeout"
	case status >= 500:
		return "internal_server_error"
	}
	return "invalid_request_error"
}

// errorResponse maps err to a status, headers and body. It is the one place where llm
// errors become HTTP.
func errorResponse(err error, h http.Header) (int, errorBody) {
	var (
		re  *requestError
		be  *budget.ExceededError
		le  *budget.LimitError
		ue  *UpstreamError
		mbe *http.MaxBytesError
	)
	status, typ, param, msg := http.StatusInternalServerError, "", "", "internal error"
	switch {
	case errors.As(err, &re):
		status, typ, param, msg = re.status, re.typ, re.param, re.msg
	case errors.As(err, &be):
		status, typ, msg = http.StatusBadRequest, "budget_exceeded", be.Error()
	case errors.As(err, &le):
		le.SetHeaders(h)
		status, msg = http.StatusTooManyRequests, le.Error()
	case errors.Is(err, ErrUnknownModel):
		status, param, msg = http.StatusBadRequest, "model", "Invalid model name passed in model="+modelOf(err)
	case errors.Is(err, ErrNoDeployment):
		h.Set("Retry-After", "5")
		status, msg = http.StatusTooManyRequests, err.Error()
	case errors.As(err, &ue):
		status, msg = ue.Status, ue.Message
		if status == 0 {
			status, msg = http.StatusBadGateway, "provider unreachable"
		}
		if ue.RetryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(int(ue.RetryAfter.Seconds())))
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
	case errors.As(err, &mbe):
		status, typ, msg = http.StatusRequestEntityTooLarge, "request_too_large", "request body too large"
	case errors.Is(err, store.ErrNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.Is(err, store.ErrConflict):
		status, typ, msg = http.StatusConflict, "conflict_error", "conflict"
	case errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusRequestTimeout, "request timed out"
	}
	if typ == "" {
		typ = typeFor(status)
	}
	d := errorDetail{Message: msg, Type: typ, Code: strconv.Itoa(status)}
	if param != "" {
		d.Param = &param
	}
	return status, errorBody{Error: d}
}

func modelOf(err error) string {
	s := err.Error()
	if i := len(ErrUnknownModel.Error()) + 2; len(s) > i {
		return s[i:]
	}
	return ""
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left
	}
	status, body := errorResponse(err, w.Header())
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "llm request failed", "path", r.URL.Path, "status", status, "err", err)
	if r.URL.Path == "/v1/messages" {
		writeJSON(w, status, anthropicError(body))
		return
	}
	writeJSON(w, status, body)
}

// anthropicErrorBody is Anthropic's error shape, which Messages API clients read.
type anthropicErrorBody struct {
	Type  string `json:"type"` // always "error"
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// anthropicError is b in Anthropic's error shape; the type is toolgate's (such as
// budget_exceeded) where Anthropic has no equivalent.
func anthropicError(b errorBody) anthropicErrorBody {
	out := anthropicErrorBody{Type: "error"}
	out.Error.Type, out.Error.Message = b.Error.Type, b.Error.Message
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
