package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/gateway/upstream"
)

type routeKind uint8

const (
	routeMCP         routeKind = iota + 1 // streamable HTTP
	routeSSE                              // legacy SSE stream (GET)
	routeSSEMessages                      // legacy SSE message endpoint (POST)
)

// Legacy SSE paths, as LiteLLM names them.
const (
	ssePath         = "/mcp/sse"
	sseMessagesPath = "/mcp/sse/messages"
)

// route is a parsed MCP path.
type route struct {
	kind    routeKind
	servers []string // nil: all servers
	single  bool     // one server with its original names
}

// parseRoute parses the path of an MCP request:
//
//	/mcp                   every server, prefixed names
//	/mcp/{server}          one server, original names
//	/{server}/mcp          one server, original names
//	/mcp/{a},{b}[,...]     these servers, prefixed names
//	/mcp/sse               legacy SSE stream (every server)
//	/mcp/sse/messages      legacy SSE message endpoint
//
// A trailing "/" is ignored. Server names are not checked against the
// registry here.
func parseRoute(path string) (route, bool) {
	if path != "/" {
		path = strings.TrimSuffix(path, "/")
	}
	switch path {
	case "/mcp":
		return route{kind: routeMCP}, true
	case ssePath:
		return route{kind: routeSSE}, true
	case sseMessagesPath:
		return route{kind: routeSSEMessages}, true
	}
	if rest, ok := strings.CutPrefix(path, "/mcp/"); ok {
		if rest == "" || strings.Contains(rest, "/") {
			return route{}, false
		}
		if !strings.Contains(rest, ",") {
			if !validServerName(rest) {
				return route{}, false
			}
			return route{kind: routeMCP, servers: []string{rest}, single: true}, true
		}
		var servers []string
		for _, s := range strings.Split(rest, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !validServerName(s) {
				return route{}, false
			}
			if !contains(servers, s) {
				servers = append(servers, s)
			}
		}
		if len(servers) == 0 {
			return route{}, false
		}
		return route{kind: routeMCP, servers: servers}, true
	}
	if first, ok := strings.CutSuffix(path, "/mcp"); ok {
		name := strings.TrimPrefix(first, "/")
		if name == "" || strings.Contains(name, "/") || !validServerName(name) {
			return route{}, false
		}
		return route{kind: routeMCP, servers: []string{name}, single: true}, true
	}
	return route{}, false
}

// validServerName accepts anything printable without separators; the
// registry decides whether the server exists.
func validServerName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == ',' || r == '/' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// buildHTTP builds the transports. No event store: mcp-go's in-memory store
// keeps every streamed response of a session until the session ends, which
// for a gateway (large tools/list responses, clients that never DELETE) is
// unbounded memory; the price is no Last-Event-ID resumption.
func (f *Federation) buildHTTP(idle time.Duration) {
	f.http = server.NewStreamableHTTPServer(f.mcp,
		server.WithSessionIdManagerResolver(f.sessions),
		server.WithSessionIdleTTL(idle),
		server.WithStreamableHTTPLogger(f.log),
	)
	f.sse = server.NewSSEServer(f.mcp,
		server.WithStaticBasePath(ssePath),
		server.WithMessageEndpoint("/messages"),
		server.WithKeepAlive(true),
		server.WithSessionIDGenerator(func(ctx context.Context, _ *http.Request) (string, error) {
			return f.sessions.generate(f.sessions.binding(ctx)), nil
		}),
	)
	f.handler = http.HandlerFunc(f.serveHTTP)
}

func (f *Federation) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "", fmt.Sprintf("unknown MCP route %q", r.URL.Path))
		return
	}
	if rebinding(r) {
		writeError(w, http.StatusForbidden, "forbidden", "Host",
			fmt.Sprintf("Host %q is not a loopback name on a loopback listener (DNS rebinding protection)", r.Host))
		return
	}
	if !f.originAllowed(r) {
		writeError(w, http.StatusForbidden, "forbidden", "Origin", fmt.Sprintf("origin %q is not allowed", r.Header.Get("Origin")))
		return
	}
	sc, unknown := f.routeScope(r.Context(), rt)
	if unknown != "" {
		writeError(w, http.StatusNotFound, "not_found", "server", fmt.Sprintf("unknown MCP server %q", unknown))
		return
	}
	narrow(&sc, r.Header.Values("X-Mcp-Servers"))

	toolsList := false
	if r.Method == http.MethodPost {
		body, status := f.readBody(w, r)
		if status != 0 {
			if status == http.StatusRequestEntityTooLarge {
				writeError(w, status, "request_too_large", "", fmt.Sprintf("request body exceeds %d bytes", f.maxBody))
			} else {
				writeError(w, status, "invalid_request", "", "cannot read request body")
			}
			return
		}
		if code, msg := checkJSONRPC(body); code != 0 {
			writeJSONRPCError(w, code, msg)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		toolsList = rt.kind == routeMCP && isToolsList(body)
	}

	ctx := withState(r.Context(), &reqState{scope: sc})
	ctx = upstream.WithCallerHeaders(ctx, r.Header)

	switch rt.kind {
	case routeSSE:
		f.sse.SSEHandler().ServeHTTP(w, r.WithContext(ctx))
	case routeSSEMessages:
		if _, err := f.sessions.check(r.URL.Query().Get("sessionId"), f.sessions.binding(ctx)); err != nil {
			writeError(w, http.StatusNotFound, "not_found", "sessionId", "unknown session")
			return
		}
		f.sse.MessageHandler().ServeHTTP(w, r.WithContext(ctx))
	default:
		if id := r.Header.Get(server.HeaderKeySessionID); id != "" && (r.Method == http.MethodGet || r.Method == http.MethodDelete) {
			if terminated, err := f.sessions.validate(id, f.sessions.binding(ctx)); err != nil || terminated {
				writeError(w, http.StatusNotFound, "not_found", "Mcp-Session-Id", "unknown session")
				return
			}
		}
		if toolsList {
			w, ctx = f.withFastList(ctx, w)
		}
		f.http.ServeHTTP(w, r.WithContext(ctx))
	}
}

// routeScope resolves a route against the registry. unknown names the first
// server that does not exist or that the caller may not use.
func (f *Federation) routeScope(ctx context.Context, rt route) (sc scope, unknown string) {
	switch {
	case rt.kind != routeMCP:
		return scope{key: "sse"}, ""
	case rt.servers == nil:
		return scope{key: "all"}, ""
	}
	reg := f.reg.Load()
	for _, s := range rt.servers {
		if reg.byName[s] == nil || !f.allowServer(ctx, s) {
			return scope{}, s
		}
	}
	if rt.single {
		return scope{servers: rt.servers, single: rt.servers[0], key: "one:" + rt.servers[0]}, ""
	}
	return scope{servers: rt.servers, key: "some:" + strings.Join(rt.servers, ",")}, ""
}

// narrow applies the x-mcp-servers header (comma-separated names): the
// request sees only the listed servers that its route already includes.
func narrow(sc *scope, values []string) {
	var want []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				want = append(want, s)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	if sc.servers == nil {
		sc.servers = want
		return
	}
	kept := []string{}
	for _, s := range sc.servers {
		if contains(want, s) {
			kept = append(kept, s)
		}
	}
	sc.servers = kept
}

// originAllowed: no Origin, a configured origin, or the request's own host.
func (f *Federation) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range f.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// rebinding reports a request that arrived on a loopback address with a Host
// header that is not a loopback name: a browser driven by a page whose domain
// was rebound to 127.0.0.1. It is the check mcp-go's streamable HTTP server
// makes (and answers in plain text); the gateway makes it first, on every MCP
// route, and answers in JSON.
func rebinding(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || local == nil {
		return false
	}
	return isLoopbackHost(local.String()) && !isLoopbackHost(r.Host)
}

// isLoopbackHost: "localhost", or a loopback IP, with or without a port.
func isLoopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// readBody reads a POST body up to the limit; status is 413 when over it.
func (f *Federation) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	if r.ContentLength > f.maxBody {
		return nil, http.StatusRequestEntityTooLarge
	}
	if r.Body == nil {
		return nil, 0
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, f.maxBody+1))
	if err != nil {
		return nil, http.StatusBadRequest
	}
	if int64(len(body)) > f.maxBody {
		return nil, http.StatusRequestEntityTooLarge
	}
	return body, 0
}

// checkJSONRPC checks that body is one JSON-RPC 2.0 message: -32700 when it
// is not JSON, -32600 when it is JSON but not a request, notification or
// response.
func checkJSONRPC(body []byte) (int, string) {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return mcp.PARSE_ERROR, "Parse error: request body is not valid JSON"
	}
	if len(body) == 0 || body[0] != '{' {
		return mcp.INVALID_REQUEST, "Invalid Request: expected one JSON-RPC message object"
	}
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		Method  *string         `json:"method"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return mcp.INVALID_REQUEST, "Invalid Request: " + err.Error()
	}
	if m.JSONRPC != mcp.JSONRPC_VERSION {
		return mcp.INVALID_REQUEST, `Invalid Request: jsonrpc must be "2.0"`
	}
	switch {
	case m.Method != nil && *m.Method != "":
	case m.Method == nil && len(m.ID) > 0 && (len(m.Result) > 0 || len(m.Error) > 0):
	default:
		return mcp.INVALID_REQUEST, "Invalid Request: missing method"
	}
	return 0, ""
}

// writeError writes a LiteLLM-shaped JSON error.
func writeError(w http.ResponseWriter, status int, typ, param, msg string) {
	body := map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nullable(param), "code": fmt.Sprint(status),
	}}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSONRPCError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(mcp.JSONRPCError{
		JSONRPC: mcp.JSONRPC_VERSION,
		Error:   mcp.NewJSONRPCErrorDetails(code, msg, nil),
	})
}
