package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/toolgate/toolgate/store"
)

// common applies the fields users, teams and orgs share: models, metadata,
// object_permission and the limit fields.
func (s *Server) common(ctx context.Context, b reqBody, models *[]string, meta *map[string]any, perm *store.ObjectPermission, lim *store.Limits) error {
	var err error
	if b.has("models") {
		if *models, err = b.strings("models"); err != nil {
			return err
		}
	}
	if b.has("metadata") {
		*meta = nil
		if _, err := b.get("metadata", meta); err != nil {
			return err
		}
	}
	if b.has("object_permission") {
		if *perm, err = b.permission(); err != nil {
			return err
		}
		if err := s.checkToolsetRefs(ctx, "object_permission.mcp_toolsets", perm.MCPToolsets); err != nil {
			return err
		}
	}
	return b.limits(lim)
}

var commonFields = append([]string{"models", "metadata", "object_permission"}, limitFields...)

func withCommon(extra ...string) []string {
	return append(append([]string{}, commonFields...), extra...)
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func requireAdmin(p *Principal, what string) error {
	if !p.Admin {
		return permDenied("only admins may %s", what)
	}
	return nil
}

// ---- users

type userView struct {
	UserID           string                 `json:"user_id"`
	UserEmail        *string                `json:"user_email"`
	UserRole         string                 `json:"user_role"`
	OrganizationID   *string                `json:"organization_id"`
	Models           []string               `json:"models"`
	Metadata         map[string]any         `json:"metadata"`
	ObjectPermission store.ObjectPermission `json:"object_permission"`
	store.Limits
	Spend     float64   `json:"spend"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewUser(u *store.User) *userView {
	role := u.Role
	if role == "" {
		role = store.RoleInternalUser
	}
	return &userView{UserID: u.ID, UserEmail: strOrNull(u.Email), UserRole: role, OrganizationID: strOrNull(u.OrgID),
		Models: nonNil(u.Models), Metadata: nonNilMap(u.Metadata), ObjectPermission: u.Permission, Limits: u.Limits,
		Spend: u.Spend, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

var roles = []string{store.RoleProxyAdmin, store.RoleProxyAdminViewer, store.RoleInternalUser, store.RoleInternalUserViewer}

// userFields applies the user fields of b onto u.
func (s *Server) userFields(ctx context.Context, b reqBody, u *store.User) error {
	var err error
	if b.has("user_email") {
		if u.Email, err = b.str("user_email"); err != nil {
			return err
		}
	}
	if b.has("user_role") {
		if u.Role, err = b.str("user_role"); err != nil {
			return err
		}
		if u.Role != "" && !slices.Contains(roles, u.Role) {
			return badRequest("user_role", "user_role must be one of %v", roles)
		}
	}
	if b.has("organization_id") {
		if u.OrgID, err = b.str("organization_id"); err != nil {
			return err
		}
	}
	if u.OrgID != "" {
		if _, err := s.store.Org(ctx, u.OrgID); errors.Is(err, store.ErrNotFound) {
			return badRequest("organization_id", "organization %q does not exist", u.OrgID)
		} else if err != nil {
			return err
		}
	}
	return s.common(ctx, b, &u.Models, &u.Metadata, &u.Permission, &u.Limits)
}

// newUser is POST /user/new (admin). Like LiteLLM it creates a key for the user unless
// auto_create_key is false, and adds the user to teams.
func (s *Server) newUser(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "create users"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("user_id", "user_email", "user_role", "organization_id", "teams", "auto_create_key", "key_alias", "duration")...)
	if err != nil {
		return err
	}
	ctx := r.Context()
	u := &store.User{}
	if u.ID, err = b.str("user_id"); err != nil {
		return err
	}
	if err := s.userFields(ctx, b, u); err != nil {
		return err
	}
	teams, err := b.strings("teams")
	if err != nil {
		return err
	}
	for _, t := range teams {
		if _, err := s.store.Team(ctx, t); errors.Is(err, store.ErrNotFound) {
			return badRequest("teams", "team %q does not exist", t)
		} else if err != nil {
			return err
		}
	}
	autoKey := true
	if _, err := b.get("auto_create_key", &autoKey); err != nil {
		return err
	}
	var key *store.Key
	var secret string
	if autoKey {
		key = &store.Key{CreatedBy: actorID(p)}
		kb := reqBody{}
		for _, f := range []string{"key_alias", "duration"} {
			if b.has(f) {
				kb[f] = b[f]
			}
		}
		if err := s.applyKeyFields(ctx, p, kb, key, true); err != nil {
			return err
		}
		if key.KeyAlias != "" {
			if _, err := s.store.KeyByAlias(ctx, key.KeyAlias); err == nil {
				return badRequest("key_alias", "key_alias is already in use")
			}
		}
	} else if b.has("key_alias") || b.has("duration") {
		return badRequest("key_alias", "key_alias and duration apply only with auto_create_key")
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "", "user_id", "a user with that user_id or user_email exists")
		}
		return err
	}
	undo := func(cause error) error {
		if err := s.store.DeleteUser(context.WithoutCancel(ctx), u.ID); err != nil {
			s.log.ErrorContext(ctx, "undo user creation", "user_id", u.ID, "err", err)
		}
		return cause
	}
	for _, t := range teams {
		if err := s.store.AddTeamMember(ctx, &store.TeamMember{TeamID: t, UserID: u.ID, Role: store.TeamRoleUser}); err != nil {
			return undo(err)
		}
	}
	resp := map[string]any{}
	if key != nil {
		var hash, name string
		secret, hash, name = newKeySecret()
		key.UserID, key.TokenHash, key.KeyName = u.ID, hash, name
		if err := s.store.CreateKey(ctx, key); err != nil {
			return undo(storeKeyErr(err))
		}
		resp["key"] = secret
		resp["key_name"] = key.KeyName
		resp["token_id"] = key.ID
		resp["expires"] = key.Expires
	}
	v := viewUser(u)
	s.audit(ctx, p, "create", "user", u.ID, nil, v)
	if key != nil {
		s.audit(ctx, p, "create", "key", key.ID, nil, viewKey(key))
	}
	writeJSON(w, http.StatusOK, mergeObject(v, resp, map[string]any{"teams": nonNil(teams)}))
	return nil
}

// merge flattens v's JSON object and extra into one map.
func mergeObject(v any, extras ...map[string]any) map[string]any {
	out := map[string]any{}
	if raw, err := json.Marshal(v); err == nil {
		_ = json.Unmarshal(raw, &out)
	}
	for _, e := range extras {
		for k, x := range e {
			out[k] = x
		}
	}
	return out
}

// userInfo is GET /user/info?user_id=. Non-admins see only themselves.
func (s *Server) userInfo(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	id := r.URL.Query().Get("user_id")
	if id == "" {
		id = actorUserID(p)
	}
	if id == "" {
		return badRequest("user_id", "user_id is required")
	}
	if !canReadAll(p) && id != actorUserID(p) {
		return permDenied("you may read only your own user")
	}
	refs := []store.BudgetRef{{Scope: store.BudgetUser, ID: id}}
	if owned, err := s.store.Keys(r.Context(), store.KeyFilter{UserID: id}); err == nil {
		for _, k := range owned {
			refs = append(refs, store.BudgetRef{Scope: store.BudgetKey, ID: k.ID})
		}
	}
	s.settleSpend(r.Context(), refs...)
	u, err := s.store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return idNotFound("user_id", "user %q not found", id)
	} else if err != nil {
		return err
	}
	keys, err := s.store.Keys(r.Context(), store.KeyFilter{UserID: id})
	if err != nil {
		return err
	}
	ms, err := s.store.Memberships(r.Context(), id)
	if err != nil {
		return err
	}
	kv := make([]*keyView, 0, len(keys))
	for _, k := range keys {
		kv = append(kv, viewKey(k))
	}
	teams := make([]*teamView, 0, len(ms))
	for _, m := range ms {
		if t, err := s.store.Team(r.Context(), m.TeamID); err == nil {
			teams = append(teams, viewTeam(t, nil))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": id, "user_info": viewUser(u), "keys": kv, "teams": teams})
	return nil
}

// updateUser is POST /user/update (admin).
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "update users"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("user_id", "user_email", "user_role", "organization_id")...)
	if err != nil {
		return err
	}
	id, err := b.str("user_id")
	if err != nil {
		return err
	}
	if id == "" {
		return badRequest("user_id", "user_id is required")
	}
	u, err := s.store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return idNotFound("user_id", "user %q not found", id)
	} else if err != nil {
		return err
	}
	before := viewUser(u)
	nu := *u
	if err := s.userFields(r.Context(), b, &nu); err != nil {
		return err
	}
	if err := s.store.UpdateUser(r.Context(), &nu); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "", "user_email", "user_email is already in use")
		}
		return err
	}
	s.invalidateAllKeys()
	after := viewUser(&nu)
	if u2, err := s.store.User(r.Context(), id); err == nil {
		after = viewUser(u2)
	}
	s.audit(r.Context(), p, "update", "user", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// deleteUsers is POST /user/delete {user_ids} (admin). Every user is checked first.
func (s *Server) deleteUsers(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "delete users"); err != nil {
		return err
	}
	b, err := readObject(r, "user_ids")
	if err != nil {
		return err
	}
	ids, err := b.strings("user_ids")
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return badRequest("user_ids", "user_ids is required")
	}
	var us []*store.User
	for _, id := range ids {
		u, err := s.store.User(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return idNotFound("user_ids", "user %q not found", id)
		} else if err != nil {
			return err
		}
		us = append(us, u)
	}
	for _, u := range us {
		if err := s.store.DeleteUser(r.Context(), u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.audit(r.Context(), p, "delete", "user", u.ID, viewUser(u), nil)
	}
	s.invalidateAllKeys()
	writeJSON(w, http.StatusOK, map[string]any{"deleted_user_ids": ids})
	return nil
}

// listUsers is GET /user/list?page=&page_size= (admins and viewers).
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if !canReadAll(p) {
		return permDenied("only admins may list users")
	}
	page, err := queryPositive(r, "page", 1)
	if err != nil {
		return err
	}
	size, err := queryPositive(r, "page_size", 25)
	if err != nil {
		return err
	}
	size = min(size, 1000)
	all, err := s.store.Users(r.Context(), 0, 0)
	if err != nil {
		return err
	}
	start := min((page-1)*size, len(all))
	end := min(start+size, len(all))
	out := make([]*userView, 0, end-start)
	for _, u := range all[start:end] {
		out = append(out, viewUser(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "total": len(all), "page": page, "page_size": size,
		"total_pages": (len(all) + size - 1) / size})
	return nil
}

// ---- teams

type memberView struct {
	UserID string `json:"user_id"`
	Role   string `json:"role"`
}

type membershipView struct {
	TeamID string `json:"team_id"`
	UserID string `json:"user_id"`
	Role   string `json:"role"`
	store.Limits
	Spend float64 `json:"spend"`
}

type teamView struct {
	TeamID           string                 `json:"team_id"`
	TeamAlias        *string                `json:"team_alias"`
	OrganizationID   *string                `json:"organization_id"`
	Models           []string               `json:"models"`
	Blocked          bool                   `json:"blocked"`
	Metadata         map[string]any         `json:"metadata"`
	ObjectPermission store.ObjectPermission `json:"object_permission"`
	store.Limits
	Spend            float64            `json:"spend"`
	ModelSpend       map[string]float64 `json:"model_spend,omitempty"` // per model_max_budget entry, on /team/info
	MembersWithRoles []memberView       `json:"members_with_roles"`
	CreatedAt        time.Time          `json:"created_at"`
	UpdatedAt        time.Time          `json:"updated_at"`
}

func viewTeam(t *store.Team, members []*store.TeamMember) *teamView {
	v := &teamView{TeamID: t.ID, TeamAlias: strOrNull(t.Alias), OrganizationID: strOrNull(t.OrgID), Models: nonNil(t.Models),
		Blocked: t.Blocked, Metadata: nonNilMap(t.Metadata), ObjectPermission: t.Permission, Limits: t.Limits, Spend: t.Spend,
		MembersWithRoles: []memberView{}, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	for _, m := range members {
		v.MembersWithRoles = append(v.MembersWithRoles, memberView{UserID: m.UserID, Role: m.Role})
	}
	return v
}

func (s *Server) teamFields(ctx context.Context, b reqBody, t *store.Team) error {
	var err error
	if b.has("team_alias") {
		if t.Alias, err = b.str("team_alias"); err != nil {
			return err
		}
	}
	if b.has("organization_id") {
		if t.OrgID, err = b.str("organization_id"); err != nil {
			return err
		}
	}
	if t.OrgID != "" {
		if _, err := s.store.Org(ctx, t.OrgID); errors.Is(err, store.ErrNotFound) {
			return badRequest("organization_id", "organization %q does not exist", t.OrgID)
		} else if err != nil {
			return err
		}
	}
	if _, err := b.get("blocked", &t.Blocked); err != nil {
		return err
	}
	if err := s.common(ctx, b, &t.Models, &t.Metadata, &t.Permission, &t.Limits); err != nil {
		return err
	}
	if b.has("model_max_budget") {
		if t.Limits.ModelMaxBudget, err = b.modelMaxBudget(); err != nil {
			return err
		}
	}
	return nil
}

type memberIn struct {
	UserID    string `json:"user_id"`
	UserEmail string `json:"user_email,omitempty"`
	Role      string `json:"role"`
}

// members decodes members_with_roles or member (an object or a list) and checks each
// user exists.
func (s *Server) members(ctx context.Context, b reqBody, field string) ([]memberIn, error) {
	if !b.set(field) {
		return nil, nil
	}
	var ms []memberIn
	if _, err := b.get(field, &ms); err != nil {
		var one memberIn
		if _, err2 := b.get(field, &one); err2 != nil {
			return nil, err
		}
		ms = []memberIn{one}
	}
	seen := map[string]bool{}
	for i, m := range ms {
		param := fmt.Sprintf("%s[%d]", field, i)
		if m.Role == "" {
			ms[i].Role, m.Role = store.TeamRoleUser, store.TeamRoleUser
		}
		if m.Role != store.TeamRoleAdmin && m.Role != store.TeamRoleUser {
			return nil, badRequest(param+".role", "role must be %q or %q", store.TeamRoleAdmin, store.TeamRoleUser)
		}
		if m.UserID == "" {
			return nil, badRequest(param+".user_id", "user_id is required")
		}
		if seen[m.UserID] {
			return nil, badRequest(param+".user_id", "user %q is listed twice", m.UserID)
		}
		seen[m.UserID] = true
		if _, err := s.store.User(ctx, m.UserID); errors.Is(err, store.ErrNotFound) {
			return nil, badRequest(param+".user_id", "user %q does not exist", m.UserID)
		} else if err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// newTeam is POST /team/new (admin).
func (s *Server) newTeam(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "create teams"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("team_id", "team_alias", "organization_id", "blocked", "members_with_roles", "model_max_budget")...)
	if err != nil {
		return err
	}
	ctx := r.Context()
	t := &store.Team{}
	if t.ID, err = b.str("team_id"); err != nil {
		return err
	}
	if err := s.teamFields(ctx, b, t); err != nil {
		return err
	}
	ms, err := s.members(ctx, b, "members_with_roles")
	if err != nil {
		return err
	}
	if err := s.store.CreateTeam(ctx, t); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "", "team_id", "team %q exists", t.ID)
		}
		return err
	}
	for _, m := range ms {
		if err := s.store.AddTeamMember(ctx, &store.TeamMember{TeamID: t.ID, UserID: m.UserID, Role: m.Role}); err != nil {
			if err2 := s.store.DeleteTeam(context.WithoutCancel(ctx), t.ID); err2 != nil {
				s.log.ErrorContext(ctx, "undo team creation", "team_id", t.ID, "err", err2)
			}
			return err
		}
	}
	members, err := s.store.TeamMembers(ctx, t.ID)
	if err != nil {
		return err
	}
	v := viewTeam(t, members)
	s.audit(ctx, p, "create", "team", t.ID, nil, v)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// teamRole returns the caller's role in team, "" when not a member.
func (s *Server) teamRole(ctx context.Context, p *Principal, teamID string) (string, error) {
	uid := actorUserID(p)
	if uid == "" {
		return "", nil
	}
	ms, err := s.store.Memberships(ctx, uid)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.TeamID == teamID {
			return m.Role, nil
		}
	}
	return "", nil
}

func (s *Server) findTeam(ctx context.Context, id string) (*store.Team, error) {
	if id == "" {
		return nil, badRequest("team_id", "team_id is required")
	}
	t, err := s.store.Team(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, idNotFound("team_id", "team %q not found", id)
	}
	return t, err
}

// teamInfo is GET /team/info?team_id=. Members may read their team.
func (s *Server) teamInfo(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	id := r.URL.Query().Get("team_id")
	if id == "" && p.Team != nil {
		id = p.Team.ID
	}
	t, err := s.findTeam(r.Context(), id)
	if err != nil {
		return err
	}
	if !canReadAll(p) {
		role, err := s.teamRole(r.Context(), p, id)
		if err != nil {
			return err
		}
		if role == "" && (p.Key == nil || p.Key.TeamID != id) {
			return permDenied("you may read only teams you belong to")
		}
	}
	if s.settleSpend(r.Context(), withModelCaps(store.BudgetRef{Scope: store.BudgetTeam, ID: t.ID}, store.BudgetTeamModel, t.Limits.ModelMaxBudget)...) {
		if t, err = s.findTeam(r.Context(), id); err != nil {
			return err
		}
	}
	modelSpend, err := s.modelSpend(r.Context(), store.BudgetTeamModel, t.ID, t.Limits.ModelMaxBudget)
	if err != nil {
		return err
	}
	members, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	keys, err := s.store.Keys(r.Context(), store.KeyFilter{TeamID: id})
	if err != nil {
		return err
	}
	kv := make([]*keyView, 0, len(keys))
	for _, k := range keys {
		if canReadAll(p) || mayReadKey(p, k) == nil {
			kv = append(kv, viewKey(k))
		}
	}
	mv := make([]membershipView, 0, len(members))
	for _, m := range members {
		mv = append(mv, membershipView{TeamID: m.TeamID, UserID: m.UserID, Role: m.Role, Limits: m.Limits, Spend: m.Spend})
	}
	tv := viewTeam(t, members)
	tv.ModelSpend = modelSpend
	writeJSON(w, http.StatusOK, map[string]any{"team_id": id, "team_info": tv, "keys": kv, "team_memberships": mv})
	return nil
}

// updateTeam is POST /team/update (admin).
func (s *Server) updateTeam(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "update teams"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("team_id", "team_alias", "organization_id", "blocked", "model_max_budget")...)
	if err != nil {
		return err
	}
	id, err := b.str("team_id")
	if err != nil {
		return err
	}
	t, err := s.findTeam(r.Context(), id)
	if err != nil {
		return err
	}
	members, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	before := viewTeam(t, members)
	nt := *t
	if err := s.teamFields(r.Context(), b, &nt); err != nil {
		return err
	}
	if err := s.store.UpdateTeam(r.Context(), &nt); err != nil {
		return err
	}
	s.invalidateAllKeys()
	after := viewTeam(&nt, members)
	if t2, err := s.store.Team(r.Context(), id); err == nil {
		after = viewTeam(t2, members)
	}
	s.audit(r.Context(), p, "update", "team", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// blockTeam is POST /team/block and /team/unblock (admin).
func (s *Server) blockTeam(block bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := PrincipalFrom(r.Context())
		if err := requireAdmin(p, "block teams"); err != nil {
			return err
		}
		b, err := readObject(r, "team_id")
		if err != nil {
			return err
		}
		id, err := b.str("team_id")
		if err != nil {
			return err
		}
		t, err := s.findTeam(r.Context(), id)
		if err != nil {
			return err
		}
		nt := *t
		nt.Blocked = block
		if err := s.store.UpdateTeam(r.Context(), &nt); err != nil {
			return err
		}
		s.invalidateAllKeys()
		action := "unblock"
		if block {
			action = "block"
		}
		after := viewTeam(&nt, nil)
		s.audit(r.Context(), p, action, "team", id, viewTeam(t, nil), after)
		writeJSON(w, http.StatusOK, after)
		return nil
	}
}

// deleteTeams is POST /team/delete {team_ids} (admin). Every team is checked first.
func (s *Server) deleteTeams(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "delete teams"); err != nil {
		return err
	}
	b, err := readObject(r, "team_ids")
	if err != nil {
		return err
	}
	ids, err := b.strings("team_ids")
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return badRequest("team_ids", "team_ids is required")
	}
	var ts []*store.Team
	for _, id := range ids {
		t, err := s.findTeam(r.Context(), id)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	for _, t := range ts {
		if err := s.store.DeleteTeam(r.Context(), t.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.audit(r.Context(), p, "delete", "team", t.ID, viewTeam(t, nil), nil)
	}
	s.invalidateAllKeys()
	writeJSON(w, http.StatusOK, map[string]any{"deleted_team_ids": ids})
	return nil
}

// listTeams is GET /team/list[?organization_id=]. Non-admins see their teams.
func (s *Server) listTeams(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	ts, err := s.store.Teams(r.Context(), r.URL.Query().Get("organization_id"))
	if err != nil {
		return err
	}
	var mine []string
	if !canReadAll(p) {
		if uid := actorUserID(p); uid != "" {
			ms, err := s.store.Memberships(r.Context(), uid)
			if err != nil {
				return err
			}
			for _, m := range ms {
				mine = append(mine, m.TeamID)
			}
		}
		if p.Key != nil && p.Key.TeamID != "" {
			mine = append(mine, p.Key.TeamID)
		}
	}
	out := make([]*teamView, 0, len(ts))
	for _, t := range ts {
		if !canReadAll(p) && !slices.Contains(mine, t.ID) {
			continue
		}
		members, err := s.store.TeamMembers(r.Context(), t.ID)
		if err != nil {
			return err
		}
		out = append(out, viewTeam(t, members))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// mayManageMembers lets admins and the team's admins change membership.
func (s *Server) mayManageMembers(ctx context.Context, p *Principal, teamID string) error {
	if p.Admin {
		return nil
	}
	if err := mayWrite(p); err != nil {
		return err
	}
	role, err := s.teamRole(ctx, p, teamID)
	if err != nil {
		return err
	}
	if role != store.TeamRoleAdmin {
		return permDenied("only admins and the team's admins may change its members")
	}
	return nil
}

// memberLimits reads max_budget_in_team and the member rate fields; they need an admin.
func memberLimits(p *Principal, b reqBody, l *store.Limits) error {
	for _, f := range []string{"max_budget_in_team", "tpm_limit", "rpm_limit"} {
		if b.set(f) && !p.Admin {
			return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: f, Message: f + " can only be set by an admin"}
		}
	}
	if b.has("max_budget_in_team") {
		l.MaxBudget = nil
		var v float64
		if ok, err := b.get("max_budget_in_team", &v); err != nil {
			return err
		} else if ok {
			if v < 0 {
				return badRequest("max_budget_in_team", "max_budget_in_team must not be negative")
			}
			l.MaxBudget = &v
		}
	}
	return b.limits(l)
}

// memberAdd is POST /team/member_add {team_id, member, max_budget_in_team}.
func (s *Server) memberAdd(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, "team_id", "member", "max_budget_in_team")
	if err != nil {
		return err
	}
	id, err := b.str("team_id")
	if err != nil {
		return err
	}
	t, err := s.findTeam(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.mayManageMembers(r.Context(), p, id); err != nil {
		return err
	}
	ms, err := s.members(r.Context(), b, "member")
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return badRequest("member", "member is required")
	}
	var lim store.Limits
	if err := memberLimits(p, b, &lim); err != nil {
		return err
	}
	existing, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	for _, m := range ms {
		for _, e := range existing {
			if e.UserID == m.UserID {
				return badRequest("member", "user %q is already a member of team %q", m.UserID, id)
			}
		}
	}
	before := viewTeam(t, existing)
	var added []string
	for _, m := range ms {
		if err := s.store.AddTeamMember(r.Context(), &store.TeamMember{TeamID: id, UserID: m.UserID, Role: m.Role, Limits: lim}); err != nil {
			for _, u := range added {
				_ = s.store.RemoveTeamMember(context.WithoutCancel(r.Context()), id, u)
			}
			return err
		}
		added = append(added, m.UserID)
	}
	members, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	s.invalidateAllKeys()
	after := viewTeam(t, members)
	s.audit(r.Context(), p, "member_add", "team", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// memberUpdate is POST /team/member_update {team_id, user_id, role, max_budget_in_team}.
func (s *Server) memberUpdate(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, "team_id", "user_id", "role", "max_budget_in_team", "tpm_limit", "rpm_limit")
	if err != nil {
		return err
	}
	id, err := b.str("team_id")
	if err != nil {
		return err
	}
	if _, err := s.findTeam(r.Context(), id); err != nil {
		return err
	}
	if err := s.mayManageMembers(r.Context(), p, id); err != nil {
		return err
	}
	uid, err := b.str("user_id")
	if err != nil {
		return err
	}
	existing, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	var m *store.TeamMember
	for _, e := range existing {
		if e.UserID == uid {
			m = e
		}
	}
	if m == nil {
		return idNotFound("user_id", "user %q is not a member of team %q", uid, id)
	}
	before := membershipView{TeamID: m.TeamID, UserID: m.UserID, Role: m.Role, Limits: m.Limits}
	nm := *m
	if b.has("role") {
		if nm.Role, err = b.str("role"); err != nil {
			return err
		}
		if nm.Role != store.TeamRoleAdmin && nm.Role != store.TeamRoleUser {
			return badRequest("role", "role must be %q or %q", store.TeamRoleAdmin, store.TeamRoleUser)
		}
	}
	if err := memberLimits(p, b, &nm.Limits); err != nil {
		return err
	}
	if err := s.store.UpdateTeamMember(r.Context(), &nm); err != nil {
		return err
	}
	after := membershipView{TeamID: nm.TeamID, UserID: nm.UserID, Role: nm.Role, Limits: nm.Limits}
	s.audit(r.Context(), p, "member_update", "team", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// memberDelete is POST /team/member_delete {team_id, user_id}.
func (s *Server) memberDelete(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, "team_id", "user_id", "user_email")
	if err != nil {
		return err
	}
	id, err := b.str("team_id")
	if err != nil {
		return err
	}
	t, err := s.findTeam(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.mayManageMembers(r.Context(), p, id); err != nil {
		return err
	}
	uid, err := b.str("user_id")
	if err != nil {
		return err
	}
	if uid == "" {
		return badRequest("user_id", "user_id is required")
	}
	before, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.store.RemoveTeamMember(r.Context(), id, uid); errors.Is(err, store.ErrNotFound) {
		return idNotFound("user_id", "user %q is not a member of team %q", uid, id)
	} else if err != nil {
		return err
	}
	after, err := s.store.TeamMembers(r.Context(), id)
	if err != nil {
		return err
	}
	s.invalidateAllKeys()
	v := viewTeam(t, after)
	s.audit(r.Context(), p, "member_delete", "team", id, viewTeam(t, before), v)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// ---- organizations

type orgView struct {
	OrganizationID    string                 `json:"organization_id"`
	OrganizationAlias *string                `json:"organization_alias"`
	Models            []string               `json:"models"`
	Metadata          map[string]any         `json:"metadata"`
	ObjectPermission  store.ObjectPermission `json:"object_permission"`
	store.Limits
	Spend     float64     `json:"spend"`
	Teams     []*teamView `json:"teams,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

func viewOrg(o *store.Org) *orgView {
	return &orgView{OrganizationID: o.ID, OrganizationAlias: strOrNull(o.Alias), Models: nonNil(o.Models),
		Metadata: nonNilMap(o.Metadata), ObjectPermission: o.Permission, Limits: o.Limits, Spend: o.Spend,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

func (s *Server) orgFields(ctx context.Context, b reqBody, o *store.Org) error {
	var err error
	if b.has("organization_alias") {
		if o.Alias, err = b.str("organization_alias"); err != nil {
			return err
		}
	}
	return s.common(ctx, b, &o.Models, &o.Metadata, &o.Permission, &o.Limits)
}

func (s *Server) findOrg(ctx context.Context, param, id string) (*store.Org, error) {
	if id == "" {
		return nil, badRequest(param, "%s is required", param)
	}
	o, err := s.store.Org(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, idNotFound(param, "organization %q not found", id)
	}
	return o, err
}

// newOrg is POST /organization/new (admin).
func (s *Server) newOrg(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "create organizations"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("organization_id", "organization_alias")...)
	if err != nil {
		return err
	}
	o := &store.Org{}
	if o.ID, err = b.str("organization_id"); err != nil {
		return err
	}
	if err := s.orgFields(r.Context(), b, o); err != nil {
		return err
	}
	if err := s.store.CreateOrg(r.Context(), o); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "", "organization_id", "organization %q exists", o.ID)
		}
		return err
	}
	v := viewOrg(o)
	s.audit(r.Context(), p, "create", "organization", o.ID, nil, v)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// myOrgs are the organizations p belongs to: its user's, its team's and its key's.
func myOrgs(p *Principal) []string {
	var out []string
	if p.User != nil && p.User.OrgID != "" {
		out = append(out, p.User.OrgID)
	}
	if p.Team != nil && p.Team.OrgID != "" {
		out = append(out, p.Team.OrgID)
	}
	if p.Org != nil {
		out = append(out, p.Org.ID)
	}
	return out
}

// orgInfo is GET /organization/info?organization_id=.
func (s *Server) orgInfo(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	id := r.URL.Query().Get("organization_id")
	if !canReadAll(p) && !slices.Contains(myOrgs(p), id) {
		return permDenied("you may read only your own organization")
	}
	o, err := s.findOrg(r.Context(), "organization_id", id)
	if err != nil {
		return err
	}
	ts, err := s.store.Teams(r.Context(), id)
	if err != nil {
		return err
	}
	v := viewOrg(o)
	v.Teams = []*teamView{}
	for _, t := range ts {
		v.Teams = append(v.Teams, viewTeam(t, nil))
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// updateOrg is PATCH (or POST) /organization/update (admin).
func (s *Server) updateOrg(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "update organizations"); err != nil {
		return err
	}
	b, err := readObject(r, withCommon("organization_id", "organization_alias")...)
	if err != nil {
		return err
	}
	id, err := b.str("organization_id")
	if err != nil {
		return err
	}
	o, err := s.findOrg(r.Context(), "organization_id", id)
	if err != nil {
		return err
	}
	before := viewOrg(o)
	no := *o
	if err := s.orgFields(r.Context(), b, &no); err != nil {
		return err
	}
	if err := s.store.UpdateOrg(r.Context(), &no); err != nil {
		return err
	}
	s.invalidateAllKeys()
	after := viewOrg(&no)
	if o2, err := s.store.Org(r.Context(), id); err == nil {
		after = viewOrg(o2)
	}
	s.audit(r.Context(), p, "update", "organization", id, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// deleteOrgs is DELETE (or POST) /organization/delete {organization_ids} (admin). An
// organization that still has teams is refused (409) and nothing is deleted.
func (s *Server) deleteOrgs(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := requireAdmin(p, "delete organizations"); err != nil {
		return err
	}
	b, err := readObject(r, "organization_ids")
	if err != nil {
		return err
	}
	ids, err := b.strings("organization_ids")
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return badRequest("organization_ids", "organization_ids is required")
	}
	var os []*store.Org
	for _, id := range ids {
		o, err := s.findOrg(r.Context(), "organization_ids", id)
		if err != nil {
			return err
		}
		ts, err := s.store.Teams(r.Context(), id)
		if err != nil {
			return err
		}
		if len(ts) > 0 {
			return errorf(http.StatusConflict, "", "organization_ids", "organization %q still has %d team(s); delete or move them first", id, len(ts))
		}
		os = append(os, o)
	}
	for _, o := range os {
		if err := s.store.DeleteOrg(r.Context(), o.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.audit(r.Context(), p, "delete", "organization", o.ID, viewOrg(o), nil)
	}
	s.invalidateAllKeys()
	writeJSON(w, http.StatusOK, map[string]any{"deleted_organization_ids": ids})
	return nil
}

// listOrgs is GET /organization/list. Non-admins see their own.
func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	os, err := s.store.Orgs(r.Context())
	if err != nil {
		return err
	}
	mine := myOrgs(p)
	out := make([]*orgView, 0, len(os))
	for _, o := range os {
		if canReadAll(p) || slices.Contains(mine, o.ID) {
			out = append(out, viewOrg(o))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
