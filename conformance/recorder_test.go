package conformance

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
)

// recorder is a transparent loopback reverse proxy in front of the gateway that notes which
// MCP protocol versions a client used, so the matrix can say which generation each client
// actually spoke. It keeps the client's Host (a loopback address) so URLs the gateway builds
// from it (the SSE endpoint event) point back through the proxy.
type recorder struct {
	mu       sync.Mutex
	versions map[string]bool // MCP-Protocol-Version headers and initialize/_meta versions seen
	methods  []string        // JSON-RPC methods in arrival order
	srv      *httptest.Server
}

// newRecorder starts a recorder forwarding to base (http://host:port) and returns it.
func newRecorder(tb testing.TB, base string) *recorder {
	tb.Helper()
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	rec := &recorder{versions: map[string]bool{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1,
	}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.note(r)
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(func() {
		rec.srv.Listener.Close() // first: a client reconnecting in between would hold Close forever
		rec.srv.CloseClientConnections()
		rec.srv.Close()
	})
	return rec
}

// rebase returns target's URL moved onto the recorder.
func (rec *recorder) rebase(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	p, _ := url.Parse(rec.srv.URL)
	u.Scheme, u.Host = p.Scheme, p.Host
	return u.String()
}

func (rec *recorder) note(r *http.Request) {
	v := r.Header.Get("Mcp-Protocol-Version")
	var method, bodyVersion string
	if r.Method == http.MethodPost && r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(b))
		var msg struct {
			Method string `json:"method"`
			Params struct {
				ProtocolVersion string         `json:"protocolVersion"`
				Meta            map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if err == nil && json.Unmarshal(b, &msg) == nil {
			method = msg.Method
			bodyVersion = msg.Params.ProtocolVersion
			if mv, ok := msg.Params.Meta["io.modelcontextprotocol/protocolVersion"].(string); ok {
				bodyVersion = mv
			}
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if v != "" {
		rec.versions[v] = true
	}
	if bodyVersion != "" && method != "initialize" {
		rec.versions[bodyVersion] = true
	}
	if method != "" {
		rec.methods = append(rec.methods, method)
	}
}

// spoke summarizes what the client used: the versions it sent after negotiation, and
// whether it opened with server/discover (2026-07-28) or initialize (2025-era).
func (rec *recorder) spoke() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var vs []string
	for v := range rec.versions {
		vs = append(vs, v)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(vs)))
	var first []string
	for _, m := range rec.methods {
		if m == "server/discover" || m == "initialize" {
			if len(first) == 0 || first[len(first)-1] != m {
				first = append(first, m)
			}
		}
	}
	s := strings.Join(vs, ", ")
	if len(first) > 0 {
		s += " (" + strings.Join(first, " → ") + ")"
	}
	if s == "" {
		return "?"
	}
	return s
}
