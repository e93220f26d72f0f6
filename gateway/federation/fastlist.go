package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
)

// Fast tools/list over streamable HTTP.
//
// mcp-go encodes a tools/list result by calling mcp.Tool.MarshalJSON for every
// tool (it builds a map and encodes that), and encoding/json then re-scans
// each tool's output: for 50 servers of 20 tools about 10 ms per request,
// repeated for every request although the tools only change when an upstream
// list is refetched. So each tool view holds its tools encoded (built with the
// view, as soon as the upstream's list arrives, from parts encoded once per
// upstream tool: toolenc.go), and a tools/list POST reuses those bytes.
//
// The request still goes through mcp-go unchanged: transport and session
// checks, protocol-era rules, hooks, result decoration (_meta, resultType,
// cache hints), status codes, headers and SSE upgrades are all mcp-go's, so
// whatever it refuses or answers differently stays refused or different. Only
// the tool array is produced differently. serveHTTP gives a tools/list POST a
// fastList in its context and a response writer that knows it; the
// AfterListTools hook then lists the caller's tools as always (f.listTools:
// the same scope, authorization, missing servers and per-caller lists), puts
// one placeholder tool (named after the internal dispatch name, which no
// upstream can produce) into the result instead of them and records their
// encodings; the writer replaces the placeholder's encoding with the
// recorded encodings joined by commas. json.Marshal(tool) is byte for byte
// what encoding/json writes for that tool inside the result (MarshalJSON's
// output compacted with the same HTML escaping, by json.NewEncoder in a JSON
// response and by json.Marshal in an SSE event), so the response is the one
// mcp-go would have written. A tool that cannot be encoded, or a response
// writer that cannot flush, leaves the request on mcp-go's own encoding.
//
// The legacy SSE transport answers on another request's stream and keeps
// mcp-go's own encoding.

// fastList is the per-request link between the AfterListTools hook and the
// response writer.
type fastList struct {
	mu          sync.Mutex
	placeholder []byte   // encoding of the placeholder tool
	tools       [][]byte // the caller's tools, encoded; nil until the hook ran
	used        bool
	written     *atomic.Uint64 // counts responses written with the recorded tools
}

type fastListKey struct{}

// toolSrc is where a listed Tool comes from: index i of v's plain or prefixed
// tools.
type toolSrc struct {
	v        *toolView
	i        int
	prefixed bool
}

// encoded returns the tool's encoding, nil if it has none.
func (s toolSrc) encoded() []byte {
	if s.v == nil {
		return nil
	}
	k := 0
	if s.prefixed {
		k = 1
	}
	if s.i >= len(s.v.enc[k]) {
		return nil
	}
	return s.v.enc[k][s.i]
}

// isToolsList reports whether body (one JSON-RPC message) is a tools/list request.
func isToolsList(body []byte) bool {
	if !bytes.Contains(body, []byte(`tools/list`)) {
		return false
	}
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	return json.Unmarshal(body, &m) == nil && m.Method == string(mcp.MethodToolsList) && len(m.ID) > 0
}

// withFastList prepares a tools/list POST for the fast encoding: a context
// carrying the fastList and a writer that substitutes the tools. It returns w
// and ctx unchanged when the fast path is off or w cannot flush (mcp-go
// decides whether it may stream by that).
func (f *Federation) withFastList(ctx context.Context, w http.ResponseWriter) (http.ResponseWriter, context.Context) {
	if f.slowList.Load() {
		return w, ctx
	}
	if _, ok := w.(http.Flusher); !ok {
		return w, ctx
	}
	fl := &fastList{written: &f.fastLists}
	return &fastListWriter{ResponseWriter: w, fl: fl}, context.WithValue(ctx, fastListKey{}, fl)
}

// shownTools returns the tools to put in a tools/list result: the caller's
// tools, or the placeholder when the request takes the fast path.
func (f *Federation) shownTools(ctx context.Context, tools []Tool) []mcp.Tool {
	if fl, _ := ctx.Value(fastListKey{}).(*fastList); fl != nil {
		if placeholder, ok := f.fastTools(fl, tools); ok {
			return []mcp.Tool{placeholder}
		}
	}
	out := make([]mcp.Tool, len(tools))
	for i := range tools {
		out[i] = tools[i].Tool
	}
	return out
}

// fastTools records the encodings of tools in fl and returns the placeholder
// tool; ok is false when some tool has no encoding.
func (f *Federation) fastTools(fl *fastList, tools []Tool) (mcp.Tool, bool) {
	enc := make([][]byte, len(tools))
	for i := range tools {
		if enc[i] = tools[i].src.encoded(); enc[i] == nil {
			return mcp.Tool{}, false
		}
	}
	placeholder := mcp.Tool{Name: f.dispatch + ".tools"}
	b, err := json.Marshal(placeholder)
	if err != nil {
		return mcp.Tool{}, false
	}
	fl.mu.Lock()
	fl.placeholder, fl.tools, fl.used = b, enc, false
	fl.mu.Unlock()
	return placeholder, true
}

// fastListWriter writes a response, replacing the placeholder tool of its
// fastList with the recorded tools in the write that carries it (mcp-go writes
// a JSON response, or an SSE event, in one Write). mcp-go serializes writes to
// one response.
type fastListWriter struct {
	http.ResponseWriter
	fl *fastList
}

var joinPool = sync.Pool{New: func() any { return new([]byte) }}

func (w *fastListWriter) Write(p []byte) (int, error) {
	fl := w.fl
	fl.mu.Lock()
	if fl.tools == nil || fl.used {
		fl.mu.Unlock()
		return w.ResponseWriter.Write(p)
	}
	at := bytes.Index(p, fl.placeholder)
	if at < 0 {
		fl.mu.Unlock()
		return w.ResponseWriter.Write(p)
	}
	fl.used = true
	tools, rest := fl.tools, p[at+len(fl.placeholder):]
	fl.mu.Unlock()

	size := len(p) - (len(p) - len(rest) - at) + len(tools)
	for _, t := range tools {
		size += len(t)
	}
	bp := joinPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	buf = append(buf, p[:at]...)
	for i, t := range tools {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, t...)
	}
	buf = append(buf, rest...)
	_, err := w.ResponseWriter.Write(buf)
	if cap(buf) <= 8<<20 {
		*bp = buf
		joinPool.Put(bp)
	}
	if err != nil {
		return 0, err
	}
	w.fl.written.Add(1)
	return len(p), nil
}

func (w *fastListWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *fastListWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
