package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/toolsets"
)

// keyView is a key as the API shows it (LiteLLM's key info shape). It never holds the
// secret or its hash: "token" is the key's stable ID, which every route accepts wherever
// LiteLLM accepts the hashed token.
type keyView struct {
	Token                      string                 `json:"token"`
	TokenID                    string                 `json:"token_id"`
	KeyName                    string                 `json:"key_name"`
	KeyAlias                   *string                `json:"key_alias"`
	UserID                     *string                `json:"user_id"`
	TeamID                     *string                `json:"team_id"`
	OrganizationID             *string                `json:"organization_id"`
	Models                     []string               `json:"models"`
	Expires                    *time.Time             `json:"expires"`
	Blocked                    bool                   `json:"blocked"`
	Metadata                   map[string]any         `json:"metadata"`
	Tags                       []string               `json:"tags"`
	ObjectPermission           store.ObjectPermission `json:"object_permission"`
	MaxBudget                  *float64               `json:"max_budget"`
	SoftBudget                 *float64               `json:"soft_budget"`
	BudgetDuration             *string                `json:"budget_duration"`
	RPMLimit                   *int64                 `json:"rpm_limit"`
	TPMLimit                   *int64                 `json:"tpm_limit"`
	MaxParallelRequests        *int64                 `json:"max_parallel_requests"`
	AllowClientSideCredentials bool                   `json:"allow_client_side_credentials"`
	// ModelMaxBudget is the key's per-model caps; ModelSpend, on /key/info only, what each
	// has spent.
	ModelMaxBudget map[string]store.ModelBudget `json:"model_max_budget"`
	ModelSpend     map[string]float64           `json:"model_spend,omitempty"`
	Spend          float64                      `json:"spend"`
	CreatedBy      string                       `json:"created_by"`
	CreatedAt      time.Time                    `json:"created_at"`
	UpdatedAt      time.Time                    `json:"updated_at"`
}

func strOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func viewKey(k *store.Key) *keyView {
	v := &keyView{
		Token: k.ID, TokenID: k.ID, KeyName: k.KeyName, KeyAlias: strOrNull(k.KeyAlias),
		UserID: strOrNull(k.UserID), TeamID: strOrNull(k.TeamID), OrganizationID: strOrNull(k.OrgID),
		Models: k.Models, Expires: k.Expires, Blocked: k.Blocked, Metadata: k.Metadata, Tags: k.Tags,
		ObjectPermission: k.Permission,
		MaxBudget:        k.Limits.MaxBudget, SoftBudget: k.Limits.SoftBudget, BudgetDuration: strOrNull(k.Limits.BudgetDuration),
		RPMLimit: k.Limits.RPMLimit, TPMLimit: k.Limits.TPMLimit, MaxParallelRequests: k.Limits.MaxParallelRequests,
		AllowClientSideCredentials: k.AllowClientSideCredentials,
		Spend:                      k.Spend, CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
	if v.Models == nil {
		v.Models = []string{}
	}
	if v.ModelMaxBudget = k.Limits.ModelMaxBudget; v.ModelMaxBudget == nil {
		v.ModelMaxBudget = map[string]store.ModelBudget{}
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	if v.Metadata == nil {
		v.Metadata = map[string]any{}
	}
	return v
}

// Roles as the management routes see them.

// userRole returns the role of p's user, "" when p has none.
func userRole(p *Principal) string {
	if p == nil || p.User == nil {
		return ""
	}
	if p.User.Role == "" {
		return store.RoleInternalUser
	}
	return p.User.Role
}

// canReadAll reports whether p may read every identity: admins and proxy_admin_viewer.
func canReadAll(p *Principal) bool {
	return p != nil && (p.Admin || userRole(p) == store.RoleProxyAdminViewer)
}

// actorUserID is the user p acts as: its user, else its key's user. "" for none.
func actorUserID(p *Principal) string {
	switch {
	case p == nil:
		return ""
	case p.User != nil:
		return p.User.ID
	case p.Key != nil:
		return p.Key.UserID
	}
	return ""
}

// actorID is what CreatedBy records for p: its user ID, else its subject.
func actorID(p *Principal) string {
	if id := actorUserID(p); id != "" {
		return id
	}
	return p.subject()
}

// mayWrite refuses read-only roles.
func mayWrite(p *Principal) error {
	if p.Admin {
		return nil
	}
	switch userRole(p) {
	case store.RoleProxyAdminViewer, store.RoleInternalUserViewer:
		return permDenied("role %s is read-only", userRole(p))
	}
	if actorUserID(p) == "" {
		return permDenied("only admins and keys that belong to a user may manage keys")
	}
	return nil
}

// mayEditKey is the ownership guard: a non-admin may change only keys it created and that
// still belong to it (for a team key: while it is still a member of the team).
func (s *Server) mayEditKey(ctx context.Context, p *Principal, k *store.Key) error {
	if p.Admin {
		return nil
	}
	if err := mayWrite(p); err != nil {
		return err
	}
	uid := actorUserID(p)
	if k.CreatedBy != uid || k.UserID != uid {
		return permDenied("you may change only keys you created and still own")
	}
	if k.TeamID != "" {
		if err := s.requireMember(ctx, k.TeamID, uid); err != nil {
			return permDenied("you may change a team key only while you are a member of team %q", k.TeamID)
		}
	}
	return nil
}

// mayReadKey lets admins and viewers read any key, others their own keys.
func mayReadKey(p *Principal, k *store.Key) error {
	if canReadAll(p) || (p.Key != nil && p.Key.ID == k.ID) {
		return nil
	}
	if uid := actorUserID(p); uid != "" && k.UserID == uid {
		return nil
	}
	return permDenied("you may read only your own keys")
}

// newKeySecret returns a fresh key, its stored hash and its display name.
func newKeySecret() (secret, hash, name string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	secret = "sk-" + hex.EncodeToString(b[:])
	return secret, hashKey(secret), "sk-..." + secret[len(secret)-4:]
}

// findKey resolves a key reference: a secret ("sk-..."), a key ID, or a token hash.
func (s *Server) findKey(ctx context.Context, ref string) (*store.Key, error) {
	if ref == "" {
		return nil, badRequest("key", "key is required")
	}
	var k *store.Key
	var err error
	if strings.HasPrefix(ref, "sk-") {
		k, err = s.store.KeyByHash(ctx, hashKey(ref), s.now())
	} else {
		k, err = s.store.Key(ctx, ref)
		if errors.Is(err, store.ErrNotFound) && len(ref) == 64 {
			k, err = s.store.KeyByHash(ctx, strings.ToLower(ref), s.now())
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, idNotFound("key", "key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("find key: %w", err)
	}
	return k, nil
}

// keyFields are the fields /key/generate, /key/update and /key/regenerate share.
var keyFields = []string{"key_alias", "duration", "models", "metadata", "tags", "team_id", "user_id",
	"organization_id", "object_permission", "blocked", "allow_client_side_credentials",
	"max_budget", "soft_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests", "model_max_budget"}

// adminOnlyKeyFields need an admin when set (to anything but null).
var adminOnlyKeyFields = append([]string{"blocked", "allow_client_side_credentials", "model_max_budget"}, limitFields...)

// applyKeyFields validates the fields in b and applies them to k (a new key when create).
// It enforces every non-admin guard and checks references; it writes nothing.
func (s *Server) applyKeyFields(ctx context.Context, p *Principal, b reqBody, k *store.Key, create bool) error {
	admin := p.Admin
	if !admin {
		for _, f := range adminOnlyKeyFields {
			if b.set(f) {
				return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: f,
					Message: fmt.Sprintf("%s can only be set by an admin", f)}
			}
		}
	}
	// Rebinding: who the key belongs to.
	uid := actorUserID(p)
	bind := func(field string, cur *string) error {
		if !b.has(field) {
			return nil
		}
		v, err := b.str(field)
		if err != nil {
			return err
		}
		if !admin {
			allowed := v == *cur
			if create && field == "user_id" {
				allowed = v == uid
			}
			if create && field == "team_id" && b.set(field) {
				allowed = true // membership is checked below
			}
			if !allowed {
				return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: field,
					Message: fmt.Sprintf("%s cannot be changed by a non-admin", field)}
			}
		}
		*cur = v
		return nil
	}
	if create && !admin {
		k.UserID = uid
	}
	if err := bind("user_id", &k.UserID); err != nil {
		return err
	}
	if err := bind("team_id", &k.TeamID); err != nil {
		return err
	}
	if err := bind("organization_id", &k.OrgID); err != nil {
		return err
	}

	var err error
	if b.has("key_alias") {
		if k.KeyAlias, err = b.str("key_alias"); err != nil {
			return err
		}
	}
	if b.has("models") {
		if k.Models, err = b.strings("models"); err != nil {
			return err
		}
	}
	if b.has("tags") {
		if k.Tags, err = b.strings("tags"); err != nil {
			return err
		}
	}
	if b.has("metadata") {
		k.Metadata = nil
		if _, err := b.get("metadata", &k.Metadata); err != nil {
			return err
		}
	}
	if b.has("duration") {
		d, err := b.str("duration")
		if err != nil {
			return err
		}
		k.Expires = nil
		if d != "" {
			dur, err := parseLiteLLMDuration(d)
			if err != nil {
				return badRequest("duration", "duration: %v", err)
			}
			t := s.now().Add(dur).UTC()
			k.Expires = &t
		}
	}
	if _, err := b.get("blocked", &k.Blocked); err != nil {
		return err
	}
	if _, err := b.get("allow_client_side_credentials", &k.AllowClientSideCredentials); err != nil {
		return err
	}
	if err := b.limits(&k.Limits); err != nil {
		return err
	}
	if b.has("model_max_budget") {
		if k.Limits.ModelMaxBudget, err = b.modelMaxBudget(); err != nil {
			return err
		}
	}
	if b.has("object_permission") {
		if k.Permission, err = b.permission(); err != nil {
			return err
		}
		if err := s.checkToolsetRefs(ctx, "object_permission.mcp_toolsets", k.Permission.MCPToolsets); err != nil {
			return err
		}
	}

	// References.
	var user *store.User
	if k.UserID != "" {
		if user, err = s.store.User(ctx, k.UserID); errors.Is(err, store.ErrNotFound) {
			return badRequest("user_id", "user %q does not exist", k.UserID)
		} else if err != nil {
			return err
		}
	}
	var team *store.Team
	if k.TeamID != "" {
		if team, err = s.store.Team(ctx, k.TeamID); errors.Is(err, store.ErrNotFound) {
			return badRequest("team_id", "team %q does not exist", k.TeamID)
		} else if err != nil {
			return err
		}
		if !admin && b.has("team_id") {
			if err := s.requireMember(ctx, k.TeamID, uid); err != nil {
				return err
			}
		}
		if k.OrgID == "" {
			k.OrgID = team.OrgID
		} else if team.OrgID != "" && team.OrgID != k.OrgID {
			return badRequest("organization_id", "team %q belongs to organization %q, not %q", team.ID, team.OrgID, k.OrgID)
		}
	}
	if k.OrgID != "" {
		if _, err := s.store.Org(ctx, k.OrgID); errors.Is(err, store.ErrNotFound) {
			return badRequest("organization_id", "organization %q does not exist", k.OrgID)
		} else if err != nil {
			return err
		}
	}
	if !admin {
		if err := s.notBroader(ctx, k, user, team); err != nil {
			return err
		}
	}
	return nil
}

// requireMember refuses a non-member of team.
func (s *Server) requireMember(ctx context.Context, teamID, userID string) error {
	ms, err := s.store.Memberships(ctx, userID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.TeamID == teamID {
			return nil
		}
	}
	return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "team_id",
		Message: fmt.Sprintf("you are not a member of team %q", teamID)}
}

// notBroader refuses a non-admin's key that would reach more than its owner. Keys are
// narrowed by their owner (team or user) and org (see toolsets), so a key's own MCP grants
// can only widen access when every other level is empty: then they are refused. Its models
// must lie within its owner's models when the owner lists any.
func (s *Server) notBroader(ctx context.Context, k *store.Key, user *store.User, team *store.Team) error {
	ownerModels := []string(nil)
	var owner, org *store.ObjectPermission
	switch {
	case team != nil:
		owner, ownerModels = &team.Permission, team.Models
	case user != nil:
		owner, ownerModels = &user.Permission, user.Models
	}
	if k.OrgID != "" {
		if o, err := s.store.Org(ctx, k.OrgID); err == nil {
			org = &o.Permission
		}
	}
	if !emptyGrant(&k.Permission) && emptyGrant(owner) && emptyGrant(org) {
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "object_permission",
			Message: "a key cannot carry MCP grants its owner does not have: your team/user and organization grant none"}
	}
	if len(ownerModels) > 0 {
		for _, m := range k.Models {
			if !slices.Contains(ownerModels, m) {
				return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "models",
					Message: fmt.Sprintf("model %q is not among your models", m)}
			}
		}
	}
	return nil
}

// emptyGrant reports whether p grants no MCP access of its own (it inherits).
func emptyGrant(p *store.ObjectPermission) bool {
	return p == nil || len(p.MCPServers)+len(p.MCPAccessGroups)+len(p.MCPToolPermissions)+len(p.MCPToolsets) == 0
}

// checkToolsetRefs 400s on toolset IDs (or names) that do not exist.
func (s *Server) checkToolsetRefs(ctx context.Context, param string, ids []string) error {
	for _, id := range ids {
		if _, err := s.store.Toolset(ctx, id); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := s.store.ToolsetByName(ctx, id); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return badRequest(param, "toolset %q does not exist", id)
	}
	return nil
}

// storeErr maps a store write error on a key to the API.
func storeKeyErr(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return badRequest("key_alias", "key_alias is already in use")
	}
	return err
}

type generateResponse struct {
	Key string `json:"key"`
	*keyView
}

// generateKey is POST /key/generate.
func (s *Server) generateKey(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	if err := mayWrite(p); err != nil {
		return err
	}
	b, err := readObject(r, keyFields...)
	if err != nil {
		return err
	}
	k := &store.Key{CreatedBy: actorID(p)}
	if err := s.applyKeyFields(r.Context(), p, b, k, true); err != nil {
		return err
	}
	secret, hash, name := newKeySecret()
	k.TokenHash, k.KeyName = hash, name
	if err := s.store.CreateKey(r.Context(), k); err != nil {
		return storeKeyErr(err)
	}
	v := viewKey(k)
	s.audit(r.Context(), p, "create", "key", k.ID, nil, v)
	writeJSON(w, http.StatusOK, generateResponse{Key: secret, keyView: v})
	return nil
}

// keyInfo is GET /key/info?key=.
func (s *Server) keyInfo(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	ref := r.URL.Query().Get("key")
	var k *store.Key
	var err error
	switch {
	case ref != "":
		k, err = s.findKey(r.Context(), ref)
	case p.Key != nil:
		k, err = s.store.Key(r.Context(), p.Key.ID)
	default:
		return badRequest("key", "key is required")
	}
	if err != nil {
		return err
	}
	if err := mayReadKey(p, k); err != nil {
		return err
	}
	if s.settleSpend(r.Context(), withModelCaps(store.BudgetRef{Scope: store.BudgetKey, ID: k.ID}, store.BudgetKeyModel, k.Limits.ModelMaxBudget)...) {
		if k, err = s.store.Key(r.Context(), k.ID); err != nil {
			return err
		}
	}
	if ref == "" {
		ref = k.ID
	}
	v := viewKey(k)
	if v.ModelSpend, err = s.modelSpend(r.Context(), store.BudgetKeyModel, k.ID, k.Limits.ModelMaxBudget); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": ref, "info": v})
	return nil
}

// withModelCaps returns ref, an owner's budget, followed by its model caps' budgets of scope.
func withModelCaps(ref store.BudgetRef, scope store.BudgetScope, caps map[string]store.ModelBudget) []store.BudgetRef {
	refs := []store.BudgetRef{ref}
	for model := range caps {
		refs = append(refs, store.BudgetRef{Scope: scope, ID: store.ModelCapID(ref.ID, model)})
	}
	return refs
}

// modelSpend returns what each of an owner's model caps has spent, nil when it has none.
func (s *Server) modelSpend(ctx context.Context, scope store.BudgetScope, ownerID string, caps map[string]store.ModelBudget) (map[string]float64, error) {
	if len(caps) == 0 {
		return nil, nil
	}
	out := make(map[string]float64, len(caps))
	for model := range caps {
		b, err := s.store.Budget(ctx, store.BudgetRef{Scope: scope, ID: store.ModelCapID(ownerID, model)})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[model] = b.Spend
	}
	return out, nil
}

// listKeys is GET /key/list.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	q := r.URL.Query()
	f := store.KeyFilter{UserID: q.Get("user_id"), TeamID: q.Get("team_id"), OrgID: q.Get("organization_id"), KeyAlias: q.Get("key_alias")}
	page, err := queryPositive(r, "page", 1)
	if err != nil {
		return err
	}
	size, err := queryPositive(r, "size", 10)
	if err != nil {
		return err
	}
	size = min(size, 1000)
	var keys []*store.Key
	if !canReadAll(p) {
		uid := actorUserID(p)
		switch {
		case uid != "":
			if f.UserID != "" && f.UserID != uid {
				return permDenied("you may list only your own keys")
			}
			f.UserID = uid
		case p.Key != nil:
			k, err := s.store.Key(r.Context(), p.Key.ID)
			if err != nil {
				return err
			}
			keys = []*store.Key{k}
		default:
			return permDenied("you may list only your own keys")
		}
	}
	if keys == nil {
		if keys, err = s.store.Keys(r.Context(), f); err != nil {
			return err
		}
	}
	total := len(keys)
	start := min((page-1)*size, total)
	end := min(start+size, total)
	out := make([]any, 0, end-start)
	full := q.Get("return_full_object") == "true"
	for _, k := range keys[start:end] {
		if full {
			out = append(out, viewKey(k))
		} else {
			out = append(out, k.ID)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"keys": out, "total_count": total, "current_page": page, "total_pages": (total + size - 1) / size,
	})
	return nil
}

// updateKey is POST /key/update.
func (s *Server) updateKey(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, append([]string{"key"}, keyFields...)...)
	if err != nil {
		return err
	}
	ref, err := b.str("key")
	if err != nil {
		return err
	}
	k, err := s.findKey(r.Context(), ref)
	if err != nil {
		return err
	}
	if err := s.mayEditKey(r.Context(), p, k); err != nil {
		return err
	}
	before := viewKey(k)
	nk := *k
	if err := s.applyKeyFields(r.Context(), p, b, &nk, false); err != nil {
		return err
	}
	if err := s.store.UpdateKey(r.Context(), &nk); err != nil {
		return storeKeyErr(err)
	}
	s.invalidateKey(k.TokenHash)
	updated, err := s.store.Key(r.Context(), k.ID)
	if err != nil {
		return err
	}
	after := viewKey(updated)
	s.audit(r.Context(), p, "update", "key", k.ID, before, after)
	writeJSON(w, http.StatusOK, after)
	return nil
}

// regenerateKey is POST /key/regenerate and POST /key/{key}/regenerate.
func (s *Server) regenerateKey(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, append([]string{"key", "grace_period", "new_key"}, keyFields...)...)
	if err != nil {
		return err
	}
	if b.has("new_key") {
		return badRequest("new_key", "new_key is not supported: toolgate generates every key")
	}
	ref := r.PathValue("key")
	if ref == "" {
		if ref, err = b.str("key"); err != nil {
			return err
		}
	}
	k, err := s.findKey(r.Context(), ref)
	if err != nil {
		return err
	}
	if err := s.mayEditKey(r.Context(), p, k); err != nil {
		return err
	}
	grace := time.Time{}
	if g, err := b.str("grace_period"); err != nil {
		return err
	} else if g != "" {
		d, err := parseLiteLLMDuration(g)
		if err != nil {
			return badRequest("grace_period", "grace_period: %v", err)
		}
		grace = s.now().Add(d)
	}
	before := viewKey(k)
	nk := *k
	if err := s.applyKeyFields(r.Context(), p, b, &nk, false); err != nil {
		return err
	}
	changed := false
	for _, f := range keyFields {
		if b.has(f) {
			changed = true
		}
	}
	if changed {
		if err := s.store.UpdateKey(r.Context(), &nk); err != nil {
			return storeKeyErr(err)
		}
	}
	secret, hash, name := newKeySecret()
	updated, err := s.store.RegenerateKey(r.Context(), k.ID, hash, name, grace)
	if err != nil {
		return err
	}
	s.invalidateKey(k.TokenHash)
	after := viewKey(updated)
	s.audit(r.Context(), p, "regenerate", "key", k.ID, before, after)
	writeJSON(w, http.StatusOK, struct {
		generateResponse
		GraceUntil *time.Time `json:"grace_period_until,omitempty"`
	}{generateResponse{Key: secret, keyView: after}, timeOrNil(grace)})
	return nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// deleteKeys is POST /key/delete {keys: [...], key_aliases: [...]}. Every key is found and
// checked before any is deleted.
func (s *Server) deleteKeys(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	b, err := readObject(r, "keys", "key_aliases")
	if err != nil {
		return err
	}
	refs, err := b.strings("keys")
	if err != nil {
		return err
	}
	aliases, err := b.strings("key_aliases")
	if err != nil {
		return err
	}
	if len(refs)+len(aliases) == 0 {
		return badRequest("keys", "keys or key_aliases is required")
	}
	var ks []*store.Key
	for _, ref := range refs {
		k, err := s.findKey(r.Context(), ref)
		if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	for _, a := range aliases {
		k, err := s.store.KeyByAlias(r.Context(), a)
		if errors.Is(err, store.ErrNotFound) {
			return idNotFound("key_aliases", "no key with alias %q", a)
		} else if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	for _, k := range ks {
		if err := s.mayEditKey(r.Context(), p, k); err != nil {
			return err
		}
	}
	for _, k := range ks {
		if err := s.store.DeleteKey(r.Context(), k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.invalidateKey(k.TokenHash)
		s.audit(r.Context(), p, "delete", "key", k.ID, viewKey(k), nil)
	}
	deleted := append(append([]string{}, refs...), aliases...)
	writeJSON(w, http.StatusOK, map[string]any{"deleted_keys": deleted})
	return nil
}

// blockKey is POST /key/block and /key/unblock (admin only).
func (s *Server) blockKey(block bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := PrincipalFrom(r.Context())
		if !p.Admin {
			return permDenied("only admins may block or unblock keys")
		}
		b, err := readObject(r, "key")
		if err != nil {
			return err
		}
		ref, err := b.str("key")
		if err != nil {
			return err
		}
		k, err := s.findKey(r.Context(), ref)
		if err != nil {
			return err
		}
		before := viewKey(k)
		nk := *k
		nk.Blocked = block
		if err := s.store.UpdateKey(r.Context(), &nk); err != nil {
			return err
		}
		s.invalidateKey(k.TokenHash)
		action := "unblock"
		if block {
			action = "block"
		}
		after := viewKey(&nk)
		s.audit(r.Context(), p, action, "key", k.ID, before, after)
		writeJSON(w, http.StatusOK, after)
		return nil
	}
}

// keyCaller builds the policy caller for a principal. It is the same chain admission
// builds (see loadKey): key, then team (or user for a personal key), then org.
func keyCaller(p *Principal) toolsets.Caller {
	c := toolsets.Caller{Admin: p.Admin}
	if p.Key != nil {
		c.Key = toolsets.Level{Name: toolsets.LevelKey, ID: p.Key.ID, Permission: &p.Key.Permission}
	}
	switch {
	case p.Team != nil:
		c.Owner = toolsets.Level{Name: toolsets.LevelTeam, ID: p.Team.ID, Permission: &p.Team.Permission}
	case p.User != nil:
		c.Owner = toolsets.Level{Name: toolsets.LevelUser, ID: p.User.ID, Permission: &p.User.Permission}
	}
	if p.Org != nil {
		c.Org = toolsets.Level{Name: toolsets.LevelOrg, ID: p.Org.ID, Permission: &p.Org.Permission}
	}
	return c
}
