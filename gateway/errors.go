package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/toolgate/toolgate/store"
)

// Error is an HTTP error with a message safe to show to clients. Handlers return it (or any
// error); writeError turns it into LiteLLM's JSON error shape. Err, when set, is the cause:
// it goes to the log, never to the client.
type Error struct {
	Status  int    // HTTP status; 0 means 500
	Type    string // LiteLLM error type, e.g. "invalid_request_error", "auth_error"; "" derives from Status
	Param   string // the offending field, if any
	Message string // safe for clients
	Err     error  // cause, logged only
	// Header holds response headers sent with the error, such as Retry-After and the
	// x-ratelimit-* headers of a 429. If nil, only Content-Type is set.
	Header http.Header
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// errorf returns an *Error with a formatted message.
func errorf(status int, typ, param, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Param: param, Message: fmt.Sprintf(format, args...)}
}

// badRequest returns a 400 naming param.
func badRequest(param, format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "invalid_request_error", param, format, args...)
}

// errorBody is LiteLLM's error envelope.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// typeForStatus is the default error type for a status.
func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "auth_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusConflict:
		return "conflict_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "internal_server_error"
	default:
		return "invalid_request_error"
	}
}

// errorResponse maps err to a status and a client-safe body. It is the one place where
// errors become HTTP: *Error keeps its status and message, store sentinels map to 404/409,
// a too-large body maps to 413, anything else is a 500 "internal error".
func errorResponse(err error) (int, errorBody) {
	var he *Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &mbe):
		he = errorf(http.StatusRequestEntityTooLarge, "", "", "request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, store.ErrNotFound):
		he = &Error{Status: http.StatusNotFound, Message: "not found"}
	case errors.Is(err, store.ErrConflict):
		he = &Error{Status: http.StatusConflict, Message: "conflict"}
	default:
		he = &Error{Status: http.StatusInternalServerError, Message: "internal error"}
	}
	status := he.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	typ := he.Type
	if typ == "" {
		typ = typeForStatus(status)
	}
	msg := he.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	d := errorDetail{Message: msg, Type: typ, Code: strconv.Itoa(status)}
	if he.Param != "" {
		p := he.Param
		d.Param = &p
	}
	return status, errorBody{Error: d}
}

// writeError writes err as LiteLLM's JSON error and logs the cause of server errors.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorResponse(err)
	if he, ok := errors.AsType[*Error](err); ok {
		for k, vs := range he.Header {
			w.Header()[k] = append([]string(nil), vs...)
		}
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "request_id", requestIDFrom(r.Context()),
			"method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	} else {
		s.log.DebugContext(r.Context(), "request refused", "request_id", requestIDFrom(r.Context()),
			"status", status, "err", err)
	}
	writeJSON(w, status, body)
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// handle adapts a handler that returns an error to an http.HandlerFunc.
func (s *Server) handle(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}
