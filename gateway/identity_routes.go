package gateway

import "net/http"

// identityRoutes registers the key, user, team, org and toolset management routes.
// Stub: the identity work replaces this file.
func (s *Server) identityRoutes(mux *http.ServeMux) {}
