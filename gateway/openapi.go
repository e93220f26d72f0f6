package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI describes the gateway's own HTTP routes (not the MCP JSON-RPC endpoints).
// TestOpenAPIMatchesRoutes checks it against the real mux.
//
//go:embed openapi.json
var openAPI []byte

// openAPIDoc serves openapi.json.
func (s *Server) openAPIDoc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
}
