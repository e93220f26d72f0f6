package gateway

import "net/http"

// llmRoutes registers the LLM completion and model management routes.
// Stub: the llm work replaces this file.
func (s *Server) llmRoutes(mux *http.ServeMux) {}
