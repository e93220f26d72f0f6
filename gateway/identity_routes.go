package gateway

import "net/http"

// identityRoutes registers the key, user, team, org and toolset management routes, the
// access explanation and the toolset-scoped MCP route, and installs the permission
// Authorizer (s.authorizer). Routes a non-admin may reach are classified as user routes;
// each handler then decides what the caller may do.
func (s *Server) identityRoutes(mux *http.ServeMux) {
	s.authorizer = newIdentity(s)

	for _, p := range []string{"/key/generate", "/key/info", "/key/list", "/key/update", "/key/regenerate", "/key/delete",
		"/user/info", "/user/list", "/team/info", "/team/list", "/team/member_add", "/team/member_update",
		"/team/member_delete", "/organization/info", "/organization/list",
		"/v1/mcp/toolset", "/v1/mcp/access/explain"} {
		s.addRouteRule(p, false, classUser)
	}
	s.addRouteRule("/v1/mcp/toolset", true, classUser)
	s.addRouteRule("/toolset", true, classMCP)

	h := s.handle
	mux.HandleFunc("POST /key/generate", h(s.generateKey))
	mux.HandleFunc("GET /key/info", h(s.keyInfo))
	mux.HandleFunc("GET /key/list", h(s.listKeys))
	mux.HandleFunc("POST /key/update", h(s.updateKey))
	mux.HandleFunc("POST /key/regenerate", h(s.regenerateKey))
	mux.HandleFunc("POST /key/{key}/regenerate", h(s.regenerateKey))
	mux.HandleFunc("POST /key/delete", h(s.deleteKeys))
	mux.HandleFunc("POST /key/block", h(s.blockKey(true)))
	mux.HandleFunc("POST /key/unblock", h(s.blockKey(false)))

	mux.HandleFunc("POST /user/new", h(s.newUser))
	mux.HandleFunc("GET /user/info", h(s.userInfo))
	mux.HandleFunc("POST /user/update", h(s.updateUser))
	mux.HandleFunc("POST /user/delete", h(s.deleteUsers))
	mux.HandleFunc("GET /user/list", h(s.listUsers))

	mux.HandleFunc("POST /team/new", h(s.newTeam))
	mux.HandleFunc("GET /team/info", h(s.teamInfo))
	mux.HandleFunc("POST /team/update", h(s.updateTeam))
	mux.HandleFunc("POST /team/delete", h(s.deleteTeams))
	mux.HandleFunc("GET /team/list", h(s.listTeams))
	mux.HandleFunc("POST /team/member_add", h(s.memberAdd))
	mux.HandleFunc("POST /team/member_update", h(s.memberUpdate))
	mux.HandleFunc("POST /team/member_delete", h(s.memberDelete))
	mux.HandleFunc("POST /team/block", h(s.blockTeam(true)))
	mux.HandleFunc("POST /team/unblock", h(s.blockTeam(false)))

	mux.HandleFunc("POST /organization/new", h(s.newOrg))
	mux.HandleFunc("GET /organization/info", h(s.orgInfo))
	mux.HandleFunc("PATCH /organization/update", h(s.updateOrg))
	mux.HandleFunc("POST /organization/update", h(s.updateOrg))
	mux.HandleFunc("DELETE /organization/delete", h(s.deleteOrgs))
	mux.HandleFunc("POST /organization/delete", h(s.deleteOrgs))
	mux.HandleFunc("GET /organization/list", h(s.listOrgs))

	mux.HandleFunc("POST /v1/mcp/toolset", h(s.createToolset))
	mux.HandleFunc("PUT /v1/mcp/toolset", h(s.updateToolset))
	mux.HandleFunc("GET /v1/mcp/toolset", h(s.listToolsets))
	mux.HandleFunc("GET /v1/mcp/toolset/{id}", h(s.getToolset))
	mux.HandleFunc("DELETE /v1/mcp/toolset/{id}", h(s.deleteToolset))
	mux.HandleFunc("GET /v1/mcp/access/explain", h(s.explain))

	mux.HandleFunc("/toolset/{name}/mcp", h(s.toolsetRoute))
}
