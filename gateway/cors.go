package gateway

import (
	"net/http"
	"strings"
)

// CORS on the MCP routes, for browser-based clients (MCP Inspector's web UI, web apps).
// The origins are general_settings.allowed_origins, the same list the MCP endpoints'
// Origin check (DNS rebinding protection) accepts: by default none, so only same-origin
// pages and non-browser clients can call, and no CORS headers are sent. "*" allows any
// origin. Preflights are answered before authentication, since browsers send no
// credentials with them. No cookies are used, so credentials are never allowed.

// corsExposed are the response headers a browser client must be able to read.
const corsExposed = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, X-Request-Id, Retry-After"

// corsAllowedHeaders are the request headers a browser client may send when the preflight
// names none.
const corsAllowedHeaders = "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-Id, X-Request-Id, X-Toolgate-Api-Key, X-Litellm-Api-Key, Traceparent, Tracestate"

// corsOrigin returns the origin to allow for r, or "" when r is not a cross-origin request
// from an allowed origin to an MCP route.
func (s *Server) corsOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.cfg.AllowedOrigins) == 0 || s.classify(r) != classMCP {
		return ""
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return origin
		}
	}
	return ""
}

// cors answers a preflight (and reports true), or adds the CORS headers to the response
// of an allowed cross-origin request.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	origin := s.corsOrigin(r)
	if origin == "" {
		if preflight && r.Header.Get("Origin") != "" && s.classify(r) == classMCP {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Type: "forbidden", Param: "Origin",
				Message: "origin " + r.Header.Get("Origin") + " is not allowed: add it to general_settings.allowed_origins"})
			return true
		}
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	allow := corsAllowedHeaders
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		allow = req
	}
	h.Set("Access-Control-Allow-Headers", allow)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
