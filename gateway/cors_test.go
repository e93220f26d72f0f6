package gateway

import (
	"strings"
	"testing"
)

const inspector = "http://localhost:6274" // MCP Inspector's web UI

func initializeBody() map[string]any {
	return map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "browser", "version": "1"}}}
}

// TestCORSDefaultRefusesCrossOrigin: with no allowed_origins, a browser preflight from
// another origin is refused with a body naming the setting, and no CORS header is sent.
func TestCORSDefaultRefusesCrossOrigin(t *testing.T) {
	g := newTestGateway(t, nil)
	r := g.do(t, "OPTIONS", "/mcp", nil, "Origin", inspector, "Access-Control-Request-Method", "POST")
	if r.status != 403 || !strings.Contains(string(r.body), "general_settings.allowed_origins") {
		t.Errorf("preflight: %d %s, want 403 naming general_settings.allowed_origins", r.status, r.body)
	}
	if v := r.header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("Access-Control-Allow-Origin %q sent for a refused origin", v)
	}
}

// TestCORSAllowedOrigin: an allowed origin's preflight is answered without credentials,
// and its requests can read the session id, the protocol version and the 401 challenge.
func TestCORSAllowedOrigin(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.AllowedOrigins = []string{inspector} })

	r := g.do(t, "OPTIONS", "/mcp", nil, "Origin", inspector, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version")
	if r.status != 204 {
		t.Fatalf("preflight: %d %s, want 204", r.status, r.body)
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":  inspector,
		"Access-Control-Allow-Headers": "authorization, content-type, mcp-protocol-version",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("preflight %s: got %q, want %q", name, got, want)
		}
	}
	if m := r.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "DELETE") || !strings.Contains(m, "POST") {
		t.Errorf("preflight Access-Control-Allow-Methods %q lacks POST or DELETE", m)
	}

	r = g.do(t, "POST", "/mcp", initializeBody(), "Origin", inspector, "Accept", "application/json, text/event-stream",
		"Authorization", "Bearer "+testMasterKey)
	if r.status != 200 || r.header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize from the allowed origin: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != inspector {
		t.Errorf("initialize Access-Control-Allow-Origin: got %q, want %q", got, inspector)
	}
	exposed := r.header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Mcp-Session-Id", "Mcp-Protocol-Version", "WWW-Authenticate"} {
		if !strings.Contains(exposed, h) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
		}
	}

	r = g.do(t, "POST", "/mcp", initializeBody(), "Origin", inspector)
	if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != inspector {
		t.Errorf("unauthenticated request from the allowed origin: %d, Access-Control-Allow-Origin %q; want 401 readable by the page",
			r.status, r.header.Get("Access-Control-Allow-Origin"))
	}

	r = g.do(t, "OPTIONS", "/mcp", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if r.status != 403 {
		t.Errorf("preflight from another origin: %d, want 403", r.status)
	}
	// Management routes get no CORS: they are not for browsers on other origins.
	r = g.do(t, "GET", "/v1/mcp/server", nil, "Origin", inspector, "Authorization", "Bearer "+testMasterKey)
	if v := r.header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("management route sent Access-Control-Allow-Origin %q", v)
	}
}
