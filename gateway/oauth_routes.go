package gateway

import "net/http"

// oauthRoutes registers the OAuth authorization server and discovery routes.
// Stub: the oauth work replaces this file.
func (s *Server) oauthRoutes(mux *http.ServeMux) {}
