package gateway

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// maxRequestIDLen bounds an x-request-id taken from a caller.
const maxRequestIDLen = 128

// middleware wraps the mux with what every route shares, outermost first: request id,
// access log and metrics, panic recovery, body limit, CORS, admission.
func (s *Server) middleware(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r.Header.Get("X-Request-Id"))
		idv := []string{id} // one slice for both: len == cap, so an Add to either copies it
		w.Header()["X-Request-Id"] = idv
		r.Header["X-Request-Id"] = idv // sent on to upstreams by headers forwarding
		rw := &statusWriter{ResponseWriter: w}
		st := &requestState{id: id, rw: rw}
		ctx := context.WithValue(r.Context(), requestStateKey{}, st)
		r = r.WithContext(ctx)
		r, untrack := s.track(r)
		defer untrack()

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic serving request", "request_id", id,
					"method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if !rw.wroteHeader {
					writeJSON(rw, http.StatusInternalServerError, errorBody{Error: errorDetail{
						Message: "internal error", Type: "internal_server_error", Code: "500"}})
				}
			}
			s.accessLog(r, st, rw, start)
		}()

		if r.ContentLength > s.cfg.MaxBodyBytes {
			s.writeError(rw, r, errorf(http.StatusRequestEntityTooLarge, "", "",
				"request body larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(rw, r.Body, s.cfg.MaxBodyBytes)
		}
		if s.cors(rw, r) {
			return // a preflight, answered before admission
		}
		s.admit(mux).ServeHTTP(rw, r)
	})
}

// accessLog logs one line per request and counts it. It never logs headers, query strings
// or bodies, which may carry credentials or tool arguments.
func (s *Server) accessLog(r *http.Request, st *requestState, rw *statusWriter, start time.Time) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	route := st.pattern
	if route == "" || route == "/" {
		route = "class:" + s.classify(r).String()
	}
	d := time.Since(start)
	nameSpan(r, route, st.id)
	s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
	if !s.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	// Typed attributes (LogAttrs) rather than key-value pairs: no boxing of each value, on a
	// line written for every request.
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("request_id", st.id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", rw.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("principal", st.principal.subject()),
		slog.String("remote", r.RemoteAddr),
	)
	if id := traceID(r); id != "" {
		attrs = append(attrs, slog.String("trace_id", id))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// requestState is what the outer middleware learns about a request from the inner layers.
// It is only touched by the goroutine serving the request.
type requestState struct {
	id        string
	principal *Principal // set by admission
	pattern   string     // the mux pattern that matched, set after routing
	rw        *statusWriter
}

type requestStateKey struct{}

// requestIDFrom returns the request id in ctx, or "".
func requestIDFrom(ctx context.Context) string {
	if st, _ := ctx.Value(requestStateKey{}).(*requestState); st != nil {
		return st.id
	}
	return ""
}

// addResponseHeaders adds h to the response of the request ctx belongs to, if its header
// has not been written yet. Code running for the request on other goroutines (an MCP tool
// call inside mcp-go) may call it: a rate-limited tools/call answers with a JSON-RPC error
// in a 200, and this is how it still carries Retry-After and x-ratelimit-*.
func addResponseHeaders(ctx context.Context, h http.Header) {
	if st, _ := ctx.Value(requestStateKey{}).(*requestState); st != nil {
		st.rw.addHeaders(h)
	}
}

// requestID returns the caller's id when it is short and printable, else a new one.
func requestID(given string) string {
	if given != "" && len(given) <= maxRequestIDLen {
		ok := true
		for i := 0; i < len(given); i++ {
			if c := given[i]; c <= ' ' || c > '~' {
				ok = false
				break
			}
		}
		if ok {
			return given
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hexString(b[:])
}

// statusWriter records the status and size of a response. It passes Flush through so
// streaming responses (SSE) keep working.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool

	mu    sync.Mutex  // guards extra, and wroteHeader's changes
	extra http.Header // added by addHeaders, written with the header
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.mu.Lock()
		for k, v := range w.extra {
			w.Header()[k] = v
		}
		w.status = code
		w.wroteHeader = true
		w.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

// addHeaders sets h on the response when its header is written; after that it does
// nothing. It is safe to call from any goroutine.
func (w *statusWriter) addHeaders(h http.Header) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader {
		return
	}
	if w.extra == nil {
		w.extra = http.Header{}
	}
	for k, v := range h {
		w.extra[k] = v
	}
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
