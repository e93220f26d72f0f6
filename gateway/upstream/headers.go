package upstream

import (
	"context"
	"net/http"
	"strings"
)

// requestIDHeader is forwarded from the caller whenever present, so one
// request can be followed across the gateway and its upstreams.
const requestIDHeader = "X-Request-Id"

// neverForward lists the caller headers that never reach an upstream, by
// canonical name: hop-by-hop headers (RFC 9110 §7.6.1), the caller's
// credentials for the gateway, cookies, and headers the MCP transport owns.
var neverForward = map[string]bool{
	"Connection":           true,
	"Keep-Alive":           true,
	"Proxy-Authenticate":   true,
	"Proxy-Authorization":  true,
	"Proxy-Connection":     true,
	"Te":                   true,
	"Trailer":              true,
	"Transfer-Encoding":    true,
	"Upgrade":              true,
	"Host":                 true,
	"Content-Length":       true,
	"Content-Type":         true,
	"Accept":               true,
	"Cookie":               true,
	"Set-Cookie":           true,
	"Authorization":        true,
	"X-Toolgate-Api-Key":   true,
	"X-Litellm-Api-Key":    true,
	"Mcp-Session-Id":       true,
	"Mcp-Protocol-Version": true,
	"Mcp-Method":           true,
	"Mcp-Name":             true,
	"Last-Event-Id":        true,
	"Forwarded":            true,
}

// transportOwned lists the headers the MCP transport sets itself; configured
// headers (static or credentials) cannot override them either.
var transportOwned = map[string]bool{
	"Host":                 true,
	"Content-Length":       true,
	"Content-Type":         true,
	"Accept":               true,
	"Mcp-Session-Id":       true,
	"Mcp-Protocol-Version": true,
	"Mcp-Method":           true,
	"Mcp-Name":             true,
	"Last-Event-Id":        true,
	"Connection":           true,
	"Transfer-Encoding":    true,
}

// forwardable reports whether the caller header name (canonical) may be
// forwarded; connNamed are the names the caller's Connection header lists,
// which are hop-by-hop as well.
func forwardable(name string, connNamed map[string]bool) bool {
	if neverForward[name] || connNamed[name] {
		return false
	}
	return !strings.HasPrefix(name, "X-Forwarded-")
}

// callerHeaders returns the headers stored by WithCallerHeaders, or nil.
func callerHeaders(ctx context.Context) http.Header {
	h, _ := ctx.Value(callerHeadersKey).(http.Header)
	return h
}

// buildHeaders renders the headers of one upstream request. Precedence, with
// names compared case-insensitively: credential headers (WithCredential) >
// Spec.AuthHeaders > Spec.StaticHeaders > forwarded caller headers.
func buildHeaders(spec *Spec, cred map[string]string, caller http.Header) map[string]string {
	out := make(map[string]string, len(spec.StaticHeaders)+len(spec.AuthHeaders)+len(cred)+2)
	if caller != nil {
		var connNamed map[string]bool
		for _, v := range caller.Values("Connection") {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					if connNamed == nil {
						connNamed = make(map[string]bool)
					}
					connNamed[http.CanonicalHeaderKey(name)] = true
				}
			}
		}
		forward := func(name string) {
			name = http.CanonicalHeaderKey(name)
			if !forwardable(name, connNamed) {
				return
			}
			if v := caller.Values(name); len(v) > 0 {
				out[name] = strings.Join(v, ", ")
			}
		}
		for _, name := range spec.ForwardHeaders {
			forward(name)
		}
		forward(requestIDHeader)
	}
	for _, set := range []map[string]string{spec.StaticHeaders, spec.AuthHeaders, cred} {
		for k, v := range set {
			k = http.CanonicalHeaderKey(k)
			if transportOwned[k] {
				continue
			}
			out[k] = v
		}
	}
	return out
}
