package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/toolsets"
)

// toolsetView is a toolset in LiteLLM's shape.
type toolsetView struct {
	ToolsetID   string          `json:"toolset_id"`
	ToolsetName string          `json:"toolset_name"`
	Description string          `json:"description"`
	Tools       []store.ToolRef `json:"tools"`
	CreatedBy   string          `json:"created_by"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

func viewToolset(t *store.Toolset) *toolsetView {
	v := &toolsetView{ToolsetID: t.ID, ToolsetName: t.Name, Description: t.Description, Tools: t.Tools,
		CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	if v.Tools == nil {
		v.Tools = []store.ToolRef{}
	}
	return v
}

// toolsetFields applies toolset_name, description and tools from b onto t. Every tool must
// name a registered server (by ID or name) and a tool; the tool itself is not checked,
// since the upstream may be down.
func (s *Server) toolsetFields(b reqBody, t *store.Toolset) error {
	var err error
	if b.has("toolset_name") {
		if t.Name, err = b.str("toolset_name"); err != nil {
			return err
		}
	}
	if strings.TrimSpace(t.Name) == "" {
		return badRequest("toolset_name", "toolset_name is required")
	}
	if b.has("description") {
		if t.Description, err = b.str("description"); err != nil {
			return err
		}
	}
	if b.has("tools") {
		var tools []store.ToolRef
		if _, err := b.get("tools", &tools); err != nil {
			return err
		}
		reg := s.reg.Load()
		seen := map[store.ToolRef]bool{}
		t.Tools = t.Tools[:0:0]
		for i, tr := range tools {
			if tr.ServerID == "" || tr.ToolName == "" {
				return badRequest(fmt.Sprintf("tools[%d]", i), "tools[%d] needs server_id and tool_name", i)
			}
			if reg == nil || (reg.byID[tr.ServerID] == nil && reg.byName[tr.ServerID] == nil) {
				return badRequest(fmt.Sprintf("tools[%d].server_id", i), "tools[%d].server_id: no MCP server %q", i, tr.ServerID)
			}
			if !seen[tr] {
				seen[tr] = true
				t.Tools = append(t.Tools, tr)
			}
		}
	}
	return nil
}

func toolsetStoreErr(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, "", "toolset_name", "toolset_name is already in use")
	}
	return err
}

// createToolset is POST /v1/mcp/toolset (admin).
func (s *Server) createToolset(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if !p.Admin {
		return permDenied("only admins may create toolsets")
	}
	b, err := readObject(r, "toolset_name", "description", "tools")
	if err != nil {
		return err
	}
	t := &store.Toolset{CreatedBy: actorID(p)}
	if err := s.toolsetFields(b, t); err != nil {
		return err
	}
	if err := s.store.CreateToolset(r.Context(), t); err != nil {
		return toolsetStoreErr(err)
	}
	s.toolsetsChanged()
	v := viewToolset(t)
	s.audit(r.Context(), p, "create", "mcp_toolset", t.ID, nil, v)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// updateToolset is PUT /v1/mcp/toolset (admin).
func (s *Server) updateToolset(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if !p.Admin {
		return permDenied("only admins may change toolsets")
	}
	b, err := readObject(r, "toolset_id", "toolset_name", "description", "tools")
	if err != nil {
		return err
	}
	id, err := b.str("toolset_id")
	if err != nil {
		return err
	}
	if id == "" {
		return badRequest("toolset_id", "toolset_id is required")
	}
	t, err := s.store.Toolset(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return idNotFound("toolset_id", "toolset %q not found", id)
	} else if err != nil {
		return err
	}
	before := viewToolset(t)
	nt := *t
	if err := s.toolsetFields(b, &nt); err != nil {
		return err
	}
	if err := s.store.UpdateToolset(r.Context(), &nt); err != nil {
		return toolsetStoreErr(err)
	}
	s.toolsetsChanged()
	after := viewToolset(&nt)
	if u, err := s.store.Toolset(r.Context(), id); err == nil {
		after = viewToolset(u)
	}
	s.audit(r.Context(), p, "update", "mcp_toolset", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// deleteToolset is DELETE /v1/mcp/toolset/{id} (admin). Grants that name it then grant
// nothing.
func (s *Server) deleteToolset(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if !p.Admin {
		return permDenied("only admins may delete toolsets")
	}
	id := r.PathValue("id")
	t, err := s.store.Toolset(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return idNotFound("toolset_id", "toolset %q not found", id)
	} else if err != nil {
		return err
	}
	if err := s.store.DeleteToolset(r.Context(), id); err != nil {
		return err
	}
	s.toolsetsChanged()
	s.audit(r.Context(), p, "delete", "mcp_toolset", id, viewToolset(t), nil)
	writeJSON(w, http.StatusOK, map[string]any{"deleted": true, "toolset_id": id})
	return nil
}

// grantedToolsets returns the toolset IDs and names in p's chain.
func grantedToolsets(p *Principal) []string {
	var out []string
	for _, op := range []*store.ObjectPermission{keyPerm(p), teamPerm(p), userPerm(p), orgPerm(p)} {
		if op != nil {
			out = append(out, op.MCPToolsets...)
		}
	}
	return out
}

func keyPerm(p *Principal) *store.ObjectPermission {
	if p.Key == nil {
		return nil
	}
	return &p.Key.Permission
}
func teamPerm(p *Principal) *store.ObjectPermission {
	if p.Team == nil {
		return nil
	}
	return &p.Team.Permission
}
func userPerm(p *Principal) *store.ObjectPermission {
	if p.User == nil || p.Team != nil {
		return nil
	}
	return &p.User.Permission
}
func orgPerm(p *Principal) *store.ObjectPermission {
	if p.Org == nil {
		return nil
	}
	return &p.Org.Permission
}

// listToolsets is GET /v1/mcp/toolset: every toolset for admins and viewers, the granted
// ones for others.
func (s *Server) listToolsets(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	ts, err := s.store.Toolsets(r.Context())
	if err != nil {
		return err
	}
	granted := grantedToolsets(p)
	out := make([]*toolsetView, 0, len(ts))
	for _, t := range ts {
		if canReadAll(p) || slices.Contains(granted, t.ID) || slices.Contains(granted, t.Name) {
			out = append(out, viewToolset(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getToolset is GET /v1/mcp/toolset/{id}.
func (s *Server) getToolset(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	t, err := s.store.Toolset(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		t, err = s.store.ToolsetByName(r.Context(), id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return idNotFound("toolset_id", "toolset %q not found", id)
	} else if err != nil {
		return err
	}
	granted := grantedToolsets(p)
	if !canReadAll(p) && !slices.Contains(granted, t.ID) && !slices.Contains(granted, t.Name) {
		return idNotFound("toolset_id", "toolset %q not found", id)
	}
	writeJSON(w, http.StatusOK, viewToolset(t))
	return nil
}

// toolsetsChanged tells the authorizer that toolsets changed.
func (s *Server) toolsetsChanged() {
	if id := s.identityOf(); id != nil {
		id.toolsetsChanged()
	}
}

// explainResponse is the body of GET /v1/mcp/access/explain.
type explainResponse struct {
	Subject  explainSubject `json:"subject"`
	Server   string         `json:"server"`
	ServerID string         `json:"server_id"`
	Tool     string         `json:"tool,omitempty"`
	Toolset  string         `json:"toolset,omitempty"`
	Internal bool           `json:"internal"`
	toolsets.Decision
	Notes []string `json:"notes,omitempty"`
}

type explainSubject struct {
	KeyID    string `json:"key_id,omitempty"`
	KeyAlias string `json:"key_alias,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	TeamID   string `json:"team_id,omitempty"`
	OrgID    string `json:"organization_id,omitempty"`
	Admin    bool   `json:"admin"`
}

// explain is GET /v1/mcp/access/explain?key_alias=|key_id=|user_id=|team_id=&server=&tool=
// [&toolset=][&internal=true|false]. Admins and viewers may ask about anyone; others only
// about themselves (their key or user). It runs the same policy function as tools/list
// and tools/call; without tool it explains the server's visibility. internal defaults to
// the asking request's own network.
func (s *Server) explain(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "key_alias", "key_id", "key", "user_id", "team_id", "server", "tool", "toolset", "internal":
		default:
			return badRequest(k, "unknown query parameter %q", k)
		}
	}
	keyID := q.Get("key_id")
	if keyID == "" {
		keyID = q.Get("key")
	}
	keyAlias, userID, teamID := q.Get("key_alias"), q.Get("user_id"), q.Get("team_id")
	var target *Principal
	var err error
	if keyID == "" && keyAlias == "" && userID == "" && teamID == "" {
		target = p
	} else if target, err = s.principalFor(r.Context(), keyID, keyAlias, userID, teamID); err != nil {
		return err
	}
	if !canReadAll(p) && !sameSubject(p, target) {
		return permDenied("you may explain only your own access")
	}
	name := q.Get("server")
	if name == "" {
		return badRequest("server", "server is required")
	}
	id := s.identityOf()
	if id == nil {
		return &Error{Status: http.StatusServiceUnavailable, Message: "permissions are not configured"}
	}
	srv := id.server(name)
	if srv == nil {
		if reg := s.reg.Load(); reg != nil && reg.byID[name] != nil {
			srv = id.server(reg.byID[name].Name)
		}
	}
	if srv == nil {
		return idNotFound("server", "no MCP server %q", name)
	}
	internal := false
	if ci, ok := callerInfoFrom(r.Context()); ok {
		internal = ci.internal
	} else {
		internal = toolsets.Internal(toolsets.ClientIP(r.RemoteAddr, strings.Join(r.Header.Values("X-Forwarded-For"), ","), id.network))
	}
	if v := q.Get("internal"); v != "" {
		if internal, err = strconv.ParseBool(v); err != nil {
			return badRequest("internal", "internal must be true or false")
		}
	}
	pol, _, err := id.currentPolicy(r.Context())
	if err != nil {
		return err
	}
	c := keyCaller(target)
	c.Toolset, c.Internal = q.Get("toolset"), internal
	sub, err := pol.Compile(c)
	if err != nil {
		if errors.Is(err, toolsets.ErrUnknownToolset) || errors.Is(err, toolsets.ErrToolsetNotGranted) {
			return badRequest("toolset", "%v", err)
		}
		return err
	}
	tool := q.Get("tool")
	resp := explainResponse{Server: srv.Name, ServerID: srv.ID, Tool: tool, Toolset: c.Toolset, Internal: internal,
		Decision: sub.Explain(srv, tool), Subject: explainSubject{Admin: target.Admin}}
	if target.Key != nil {
		resp.Subject.KeyID, resp.Subject.KeyAlias = target.Key.ID, target.Key.KeyAlias
		if target.Key.Blocked {
			resp.Notes = append(resp.Notes, "the key is blocked: admission refuses it before any permission check")
		}
		if target.Key.Expires != nil && !s.now().Before(*target.Key.Expires) {
			resp.Notes = append(resp.Notes, "the key has expired: admission refuses it before any permission check")
		}
	}
	if target.User != nil {
		resp.Subject.UserID = target.User.ID
	}
	if target.Team != nil {
		resp.Subject.TeamID = target.Team.ID
		if target.Team.Blocked {
			resp.Notes = append(resp.Notes, "the team is blocked: admission refuses its keys")
		}
	}
	if target.Org != nil {
		resp.Subject.OrgID = target.Org.ID
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// sameSubject reports whether target is p itself, or p's own user.
func sameSubject(p, target *Principal) bool {
	if p == target {
		return true
	}
	if p.Key != nil && target.Key != nil && p.Key.ID == target.Key.ID {
		return true
	}
	uid := actorUserID(p)
	return uid != "" && target.Key == nil && target.Team == nil && target.User != nil && target.User.ID == uid
}
