package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toolgate/toolgate/store"
)

// upsertLimits mirrors an identity's Limits into its Budget row, creating the row when absent.
// Spend and Reserved are kept; ResetAt is kept while the duration does not change.
func (db *DB) upsertLimits(ctx context.Context, q queryer, ref store.BudgetRef, l store.Limits) error {
	now := db.now()
	next, err := store.NextBudgetReset(l.BudgetDuration, now)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO budgets (scope, id, max_budget, soft_budget, duration, reset_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (scope, id) DO UPDATE SET
			max_budget = excluded.max_budget,
			soft_budget = excluded.soft_budget,
			reset_at = CASE WHEN budgets.duration = excluded.duration AND budgets.reset_at IS NOT NULL
				THEN budgets.reset_at ELSE excluded.reset_at END,
			duration = excluded.duration,
			updated_at = excluded.updated_at`,
		string(ref.Scope), ref.ID, l.MaxBudget, l.SoftBudget, l.BudgetDuration, nullTime(next), now)
	return mapErr(fmt.Sprintf("budget %s %s", ref.Scope, ref.ID), err)
}

func deleteBudget(ctx context.Context, q queryer, scope store.BudgetScope, id string) error {
	_, err := q.Exec(ctx, `DELETE FROM budgets WHERE scope = $1 AND id = $2`, string(scope), id)
	return err
}

func memberID(teamID, userID string) string { return teamID + "/" + userID }

// syncModelCaps mirrors a key's or team's per-model caps into Budget rows of scope: those
// listed are created or updated (their spend kept), the owner's others deleted.
func (db *DB) syncModelCaps(ctx context.Context, tx pgx.Tx, scope store.BudgetScope, ownerID string, caps map[string]store.ModelBudget) error {
	prefix := store.ModelCapID(ownerID, "")
	keep := make([]string, 0, len(caps))
	for model := range caps {
		keep = append(keep, prefix+model)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM budgets WHERE scope = $1 AND starts_with(id, $2) AND NOT (id = ANY($3))`,
		string(scope), prefix, keep); err != nil {
		return err
	}
	for model, c := range caps {
		limit := c.MaxBudget
		ref := store.BudgetRef{Scope: scope, ID: prefix + model}
		if err := db.upsertLimits(ctx, tx, ref, store.Limits{MaxBudget: &limit, BudgetDuration: c.Duration}); err != nil {
			return err
		}
	}
	return nil
}

// ---- keys

const keyColumns = `k.id, k.token_hash, k.key_name, k.key_alias, k.user_id, k.team_id, k.org_id, k.models,
	k.expires, k.blocked, k.metadata, k.tags, k.permission, k.limits, k.allow_client_side_credentials,
	k.created_by, k.created_at, k.updated_at, COALESCE(b.spend, 0)::float8`

const keyFrom = ` FROM keys k LEFT JOIN budgets b ON b.scope = 'key' AND b.id = k.id`

func scanKey(sc scanner) (*store.Key, error) {
	var (
		k                                          store.Key
		alias                                      *string
		models, metadata, tags, permission, limits string
	)
	err := sc.Scan(&k.ID, &k.TokenHash, &k.KeyName, &alias, &k.UserID, &k.TeamID, &k.OrgID, &models,
		&k.Expires, &k.Blocked, &metadata, &tags, &permission, &limits, &k.AllowClientSideCredentials,
		&k.CreatedBy, &k.CreatedAt, &k.UpdatedAt, &k.Spend)
	if err != nil {
		return nil, err
	}
	if alias != nil {
		k.KeyAlias = *alias
	}
	if err := unJSONAll(models, &k.Models, metadata, &k.Metadata, tags, &k.Tags, permission, &k.Permission, limits, &k.Limits); err != nil {
		return nil, err
	}
	k.Expires, k.CreatedAt, k.UpdatedAt = utcPtr(k.Expires), k.CreatedAt.UTC(), k.UpdatedAt.UTC()
	return &k, nil
}

func keyJSON(k *store.Key) (perm, meta string, err error) {
	if perm, err = jsonText(k.Permission); err != nil {
		return "", "", err
	}
	if meta, err = jsonText(k.Metadata); err != nil {
		return "", "", fmt.Errorf("metadata: %w", err)
	}
	return perm, meta, nil
}

// CreateKey inserts k and its Budget row.
func (db *DB) CreateKey(ctx context.Context, k *store.Key) error {
	id := k.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, meta, err := keyJSON(k)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO keys (id, token_hash, key_name, key_alias, user_id, team_id, org_id,
			models, expires, blocked, metadata, tags, permission, limits, allow_client_side_credentials,
			created_by, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$17)`,
			id, k.TokenHash, k.KeyName, nullString(k.KeyAlias), k.UserID, k.TeamID, k.OrgID, mustJSON(k.Models),
			k.Expires, k.Blocked, meta, mustJSON(k.Tags), perm, mustJSON(k.Limits),
			k.AllowClientSideCredentials, k.CreatedBy, now)
		if err != nil {
			return mapErr("create key", err)
		}
		if err := db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetKey, ID: id}, k.Limits); err != nil {
			return err
		}
		return mapErr("create key", db.syncModelCaps(ctx, tx, store.BudgetKeyModel, id, k.Limits.ModelMaxBudget))
	})
	if err != nil {
		return err
	}
	k.ID, k.CreatedAt, k.UpdatedAt = id, now, now
	return nil
}

func (db *DB) oneKey(ctx context.Context, q queryer, what, where string, args ...any) (*store.Key, error) {
	k, err := scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+` WHERE `+where, args...))
	if err != nil {
		return nil, mapErr(what, err)
	}
	return k, nil
}

// Key returns the key with the given ID.
func (db *DB) Key(ctx context.Context, id string) (*store.Key, error) {
	return db.oneKey(ctx, db.pool, "key "+id, "k.id = $1", id)
}

// KeyByHash returns the key whose token hash is hash, or whose previous hash is hash and
// still inside its grace period at now.
func (db *DB) KeyByHash(ctx context.Context, hash string, now time.Time) (*store.Key, error) {
	return db.oneKey(ctx, db.pool, "key by hash", `k.token_hash = $1
		OR k.id = (SELECT key_id FROM key_grace_hashes WHERE token_hash = $1 AND grace_until > $2)
		ORDER BY k.token_hash = $1 DESC LIMIT 1`, hash, now)
}

// KeyByAlias returns the key with that alias.
func (db *DB) KeyByAlias(ctx context.Context, alias string) (*store.Key, error) {
	if alias == "" {
		return nil, fmt.Errorf("key by alias: empty alias: %w", store.ErrNotFound)
	}
	return db.oneKey(ctx, db.pool, "key by alias "+alias, "k.key_alias = $1", alias)
}

// Keys returns matching keys ordered by CreatedAt, then ID.
func (db *DB) Keys(ctx context.Context, f store.KeyFilter) ([]*store.Key, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{
		{"k.user_id", f.UserID}, {"k.team_id", f.TeamID}, {"k.org_id", f.OrgID},
		{"k.created_by", f.CreatedBy}, {"k.key_alias", f.KeyAlias},
	} {
		if c.v != "" {
			args = append(args, c.v)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	q := `SELECT ` + keyColumns + keyFrom
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limitArg(f.Limit), f.Offset)
	q += fmt.Sprintf(" ORDER BY k.created_at, k.id LIMIT $%d OFFSET $%d", len(args)-1, len(args))
	return queryAll(ctx, db.pool, "list keys", scanKey, q, args...)
}

// limitArg turns "0 means no limit" into LIMIT NULL.
func limitArg(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}

// UpdateKey replaces the key with ID k.ID, except its hash, name and creation fields.
func (db *DB) UpdateKey(ctx context.Context, k *store.Key) error {
	now := db.now()
	perm, meta, err := keyJSON(k)
	if err != nil {
		return fmt.Errorf("update key: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE keys SET key_alias = $1, user_id = $2, team_id = $3, org_id = $4,
			models = $5, expires = $6, blocked = $7, metadata = $8, tags = $9, permission = $10, limits = $11,
			allow_client_side_credentials = $12, updated_at = $13 WHERE id = $14`,
			nullString(k.KeyAlias), k.UserID, k.TeamID, k.OrgID, mustJSON(k.Models), k.Expires, k.Blocked,
			meta, mustJSON(k.Tags), perm, mustJSON(k.Limits), k.AllowClientSideCredentials, now, k.ID)
		if err != nil {
			return mapErr("update key "+k.ID, err)
		}
		if err := notFoundIfNone("update key "+k.ID, tag); err != nil {
			return err
		}
		if err := db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetKey, ID: k.ID}, k.Limits); err != nil {
			return err
		}
		return mapErr("update key "+k.ID, db.syncModelCaps(ctx, tx, store.BudgetKeyModel, k.ID, k.Limits.ModelMaxBudget))
	})
	if err != nil {
		return err
	}
	k.UpdatedAt = now
	return nil
}

// RegenerateKey sets a new hash and display name on key id, keeping the old hash valid
// until graceUntil.
func (db *DB) RegenerateKey(ctx context.Context, id, newHash, newKeyName string, graceUntil time.Time) (*store.Key, error) {
	now := db.now()
	what := "regenerate key " + id
	var k *store.Key
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var old string
		if err := tx.QueryRow(ctx, `SELECT token_hash FROM keys WHERE id = $1 FOR UPDATE`, id).Scan(&old); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE keys SET token_hash = $1, key_name = $2, updated_at = $3 WHERE id = $4`,
			newHash, newKeyName, now, id); err != nil {
			return mapErr(what, err)
		}
		// The new hash supersedes any grace entry for it; the old one gets its grace.
		if _, err := tx.Exec(ctx, `DELETE FROM key_grace_hashes WHERE token_hash = $1 OR grace_until <= $2`, newHash, now); err != nil {
			return mapErr(what, err)
		}
		if graceUntil.After(now) && old != newHash {
			if _, err := tx.Exec(ctx, `INSERT INTO key_grace_hashes (token_hash, key_id, grace_until) VALUES ($1, $2, $3)
				ON CONFLICT (token_hash) DO UPDATE SET key_id = excluded.key_id, grace_until = excluded.grace_until`,
				old, id, graceUntil); err != nil {
				return mapErr(what, err)
			}
		}
		var err error
		k, err = db.oneKey(ctx, tx, what, "k.id = $1", id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// DeleteKey removes the key, its grace hashes and its Budget row.
func (db *DB) DeleteKey(ctx context.Context, id string) error {
	what := "delete key " + id
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM keys WHERE id = $1`, id)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, tag); err != nil {
			return err
		}
		if err := deleteBudget(ctx, tx, store.BudgetKey, id); err != nil {
			return mapErr(what, err)
		}
		return mapErr(what, db.syncModelCaps(ctx, tx, store.BudgetKeyModel, id, nil))
	})
}

// deleteKeysWhere removes the keys matching cond (on keys' columns, argument $1) and their
// Budget rows.
func deleteKeysWhere(ctx context.Context, tx pgx.Tx, cond string, arg any) error {
	if _, err := tx.Exec(ctx, `DELETE FROM budgets WHERE scope = 'key'
		AND id IN (SELECT id FROM keys WHERE `+cond+`)`, arg); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM budgets WHERE scope = 'key_model'
		AND split_part(id, '/', 1) IN (SELECT id FROM keys WHERE `+cond+`)`, arg); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM keys WHERE `+cond, arg)
	return err
}

// ---- users

const userColumns = `u.id, u.email, u.role, u.org_id, u.models, u.metadata, u.permission, u.limits,
	u.created_at, u.updated_at, COALESCE(b.spend, 0)::float8`

const userFrom = ` FROM users u LEFT JOIN budgets b ON b.scope = 'user' AND b.id = u.id`

func scanUser(sc scanner) (*store.User, error) {
	var (
		u                                    store.User
		email                                *string
		models, metadata, permission, limits string
	)
	err := sc.Scan(&u.ID, &email, &u.Role, &u.OrgID, &models, &metadata, &permission, &limits, &u.CreatedAt, &u.UpdatedAt, &u.Spend)
	if err != nil {
		return nil, err
	}
	if email != nil {
		u.Email = *email
	}
	if err := unJSONAll(models, &u.Models, metadata, &u.Metadata, permission, &u.Permission, limits, &u.Limits); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return &u, nil
}

func identityJSON(perm store.ObjectPermission, metadata map[string]any) (string, string, error) {
	p, err := jsonText(perm)
	if err != nil {
		return "", "", err
	}
	m, err := jsonText(metadata)
	if err != nil {
		return "", "", fmt.Errorf("metadata: %w", err)
	}
	return p, m, nil
}

// CreateUser inserts u and its Budget row.
func (db *DB) CreateUser(ctx context.Context, u *store.User) error {
	id := u.ID
	if id == "" {
		id = newID()
	}
	role := u.Role
	if role == "" {
		role = store.RoleInternalUser
	}
	now := db.now()
	perm, meta, err := identityJSON(u.Permission, u.Metadata)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (id, email, role, org_id, models, metadata, permission, limits,
			created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)`,
			id, nullString(u.Email), role, u.OrgID, mustJSON(u.Models), meta, perm, mustJSON(u.Limits), now)
		if err != nil {
			return mapErr("create user "+id, err)
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetUser, ID: id}, u.Limits)
	})
	if err != nil {
		return err
	}
	u.ID, u.Role, u.CreatedAt, u.UpdatedAt = id, role, now, now
	return nil
}

// User returns the user with the given ID.
func (db *DB) User(ctx context.Context, id string) (*store.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+userFrom+` WHERE u.id = $1`, id))
	if err != nil {
		return nil, mapErr("user "+id, err)
	}
	return u, nil
}

// Users returns users ordered by ID.
func (db *DB) Users(ctx context.Context, limit, offset int) ([]*store.User, error) {
	return queryAll(ctx, db.pool, "list users", scanUser,
		`SELECT `+userColumns+userFrom+` ORDER BY u.id LIMIT $1 OFFSET $2`, limitArg(limit), offset)
}

// UpdateUser replaces the user with ID u.ID, except its creation time.
func (db *DB) UpdateUser(ctx context.Context, u *store.User) error {
	role := u.Role
	if role == "" {
		role = store.RoleInternalUser
	}
	now := db.now()
	perm, meta, err := identityJSON(u.Permission, u.Metadata)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET email = $1, role = $2, org_id = $3, models = $4, metadata = $5,
			permission = $6, limits = $7, updated_at = $8 WHERE id = $9`,
			nullString(u.Email), role, u.OrgID, mustJSON(u.Models), meta, perm, mustJSON(u.Limits), now, u.ID)
		if err != nil {
			return mapErr("update user "+u.ID, err)
		}
		if err := notFoundIfNone("update user "+u.ID, tag); err != nil {
			return err
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetUser, ID: u.ID}, u.Limits)
	})
	if err != nil {
		return err
	}
	u.Role, u.UpdatedAt = role, now
	return nil
}

// DeleteUser removes the user, their memberships, their keys and all their Budget rows.
func (db *DB) DeleteUser(ctx context.Context, id string) error {
	what := "delete user " + id
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return mapErr(what, err)
		}
		if err := deleteKeysWhere(ctx, tx, "user_id = $1", id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM budgets WHERE scope = 'team_member'
			AND id IN (SELECT team_id || '/' || user_id FROM team_members WHERE user_id = $1)`, id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM team_members WHERE user_id = $1`, id); err != nil {
			return mapErr(what, err)
		}
		if err := deleteBudget(ctx, tx, store.BudgetUser, id); err != nil {
			return mapErr(what, err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		return mapErr(what, err)
	})
}

// ---- teams

const teamColumns = `t.id, t.alias, t.org_id, t.models, t.blocked, t.metadata, t.permission, t.limits,
	t.created_at, t.updated_at, COALESCE(b.spend, 0)::float8`

const teamFrom = ` FROM teams t LEFT JOIN budgets b ON b.scope = 'team' AND b.id = t.id`

func scanTeam(sc scanner) (*store.Team, error) {
	var (
		t                                    store.Team
		models, metadata, permission, limits string
	)
	err := sc.Scan(&t.ID, &t.Alias, &t.OrgID, &models, &t.Blocked, &metadata, &permission, &limits, &t.CreatedAt, &t.UpdatedAt, &t.Spend)
	if err != nil {
		return nil, err
	}
	if err := unJSONAll(models, &t.Models, metadata, &t.Metadata, permission, &t.Permission, limits, &t.Limits); err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return &t, nil
}

// CreateTeam inserts t and its Budget row.
func (db *DB) CreateTeam(ctx context.Context, t *store.Team) error {
	id := t.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, meta, err := identityJSON(t.Permission, t.Metadata)
	if err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO teams (id, alias, org_id, models, blocked, metadata, permission, limits,
			created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)`,
			id, t.Alias, t.OrgID, mustJSON(t.Models), t.Blocked, meta, perm, mustJSON(t.Limits), now)
		if err != nil {
			return mapErr("create team "+id, err)
		}
		if err := db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeam, ID: id}, t.Limits); err != nil {
			return err
		}
		return mapErr("create team", db.syncModelCaps(ctx, tx, store.BudgetTeamModel, id, t.Limits.ModelMaxBudget))
	})
	if err != nil {
		return err
	}
	t.ID, t.CreatedAt, t.UpdatedAt = id, now, now
	return nil
}

// Team returns the team with the given ID.
func (db *DB) Team(ctx context.Context, id string) (*store.Team, error) {
	t, err := scanTeam(db.pool.QueryRow(ctx, `SELECT `+teamColumns+teamFrom+` WHERE t.id = $1`, id))
	if err != nil {
		return nil, mapErr("team "+id, err)
	}
	return t, nil
}

// Teams returns the teams of an org ("" for all) ordered by ID.
func (db *DB) Teams(ctx context.Context, orgID string) ([]*store.Team, error) {
	return queryAll(ctx, db.pool, "list teams", scanTeam,
		`SELECT `+teamColumns+teamFrom+` WHERE $1 = '' OR t.org_id = $1 ORDER BY t.id`, orgID)
}

// UpdateTeam replaces the team with ID t.ID, except its creation time.
func (db *DB) UpdateTeam(ctx context.Context, t *store.Team) error {
	now := db.now()
	perm, meta, err := identityJSON(t.Permission, t.Metadata)
	if err != nil {
		return fmt.Errorf("update team: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE teams SET alias = $1, org_id = $2, models = $3, blocked = $4, metadata = $5,
			permission = $6, limits = $7, updated_at = $8 WHERE id = $9`,
			t.Alias, t.OrgID, mustJSON(t.Models), t.Blocked, meta, perm, mustJSON(t.Limits), now, t.ID)
		if err != nil {
			return mapErr("update team "+t.ID, err)
		}
		if err := notFoundIfNone("update team "+t.ID, tag); err != nil {
			return err
		}
		if err := db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeam, ID: t.ID}, t.Limits); err != nil {
			return err
		}
		return mapErr("update team "+t.ID, db.syncModelCaps(ctx, tx, store.BudgetTeamModel, t.ID, t.Limits.ModelMaxBudget))
	})
	if err != nil {
		return err
	}
	t.UpdatedAt = now
	return nil
}

// DeleteTeam removes the team, its memberships, its keys and their Budget rows.
func (db *DB) DeleteTeam(ctx context.Context, id string) error {
	what := "delete team " + id
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM teams WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return mapErr(what, err)
		}
		if err := deleteKeysWhere(ctx, tx, "team_id = $1", id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM budgets WHERE scope = 'team_member'
			AND id IN (SELECT team_id || '/' || user_id FROM team_members WHERE team_id = $1)`, id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM team_members WHERE team_id = $1`, id); err != nil {
			return mapErr(what, err)
		}
		if err := db.syncModelCaps(ctx, tx, store.BudgetTeamModel, id, nil); err != nil {
			return mapErr("delete team "+id, err)
		}
		if err := deleteBudget(ctx, tx, store.BudgetTeam, id); err != nil {
			return mapErr(what, err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM teams WHERE id = $1`, id)
		return mapErr(what, err)
	})
}

// ---- team members

const memberColumns = `m.team_id, m.user_id, m.role, m.limits, COALESCE(b.spend, 0)::float8`

const memberFrom = ` FROM team_members m LEFT JOIN budgets b ON b.scope = 'team_member' AND b.id = m.team_id || '/' || m.user_id`

func scanMember(sc scanner) (*store.TeamMember, error) {
	var (
		m      store.TeamMember
		limits string
	)
	if err := sc.Scan(&m.TeamID, &m.UserID, &m.Role, &limits, &m.Spend); err != nil {
		return nil, err
	}
	if err := unJSON(limits, &m.Limits); err != nil {
		return nil, err
	}
	return &m, nil
}

// AddTeamMember adds m and its Budget row.
func (db *DB) AddTeamMember(ctx context.Context, m *store.TeamMember) error {
	what := fmt.Sprintf("add member %s to team %s", m.UserID, m.TeamID)
	return db.inTx(ctx, func(tx pgx.Tx) error {
		// Lock both rows so that a concurrent delete cannot slip between the check and the insert.
		var teams, users int
		if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM teams WHERE id = $1 FOR SHARE) t),
			(SELECT COUNT(*) FROM (SELECT 1 FROM users WHERE id = $2 FOR SHARE) u)`, m.TeamID, m.UserID).Scan(&teams, &users); err != nil {
			return mapErr(what, err)
		}
		if teams == 0 {
			return fmt.Errorf("%s: team: %w", what, store.ErrNotFound)
		}
		if users == 0 {
			return fmt.Errorf("%s: user: %w", what, store.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO team_members (team_id, user_id, role, limits) VALUES ($1, $2, $3, $4)`,
			m.TeamID, m.UserID, m.Role, mustJSON(m.Limits)); err != nil {
			return mapErr(what, err)
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeamMember, ID: memberID(m.TeamID, m.UserID)}, m.Limits)
	})
}

// UpdateTeamMember replaces a member's role and limits.
func (db *DB) UpdateTeamMember(ctx context.Context, m *store.TeamMember) error {
	what := fmt.Sprintf("update member %s of team %s", m.UserID, m.TeamID)
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE team_members SET role = $1, limits = $2 WHERE team_id = $3 AND user_id = $4`,
			m.Role, mustJSON(m.Limits), m.TeamID, m.UserID)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, tag); err != nil {
			return err
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeamMember, ID: memberID(m.TeamID, m.UserID)}, m.Limits)
	})
}

// RemoveTeamMember removes a membership and its Budget row.
func (db *DB) RemoveTeamMember(ctx context.Context, teamID, userID string) error {
	what := fmt.Sprintf("remove member %s from team %s", userID, teamID)
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM team_members WHERE team_id = $1 AND user_id = $2`, teamID, userID)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, tag); err != nil {
			return err
		}
		return mapErr(what, deleteBudget(ctx, tx, store.BudgetTeamMember, memberID(teamID, userID)))
	})
}

// TeamMembers returns the members of a team ordered by UserID.
func (db *DB) TeamMembers(ctx context.Context, teamID string) ([]*store.TeamMember, error) {
	return queryAll(ctx, db.pool, "members of team "+teamID, scanMember,
		`SELECT `+memberColumns+memberFrom+` WHERE m.team_id = $1 ORDER BY m.user_id`, teamID)
}

// Memberships returns the memberships of a user ordered by TeamID.
func (db *DB) Memberships(ctx context.Context, userID string) ([]*store.TeamMember, error) {
	return queryAll(ctx, db.pool, "memberships of user "+userID, scanMember,
		`SELECT `+memberColumns+memberFrom+` WHERE m.user_id = $1 ORDER BY m.team_id`, userID)
}

// ---- orgs

const orgColumns = `o.id, o.alias, o.models, o.metadata, o.permission, o.limits, o.created_at, o.updated_at,
	COALESCE(b.spend, 0)::float8`

const orgFrom = ` FROM orgs o LEFT JOIN budgets b ON b.scope = 'org' AND b.id = o.id`

func scanOrg(sc scanner) (*store.Org, error) {
	var (
		o                                    store.Org
		models, metadata, permission, limits string
	)
	err := sc.Scan(&o.ID, &o.Alias, &models, &metadata, &permission, &limits, &o.CreatedAt, &o.UpdatedAt, &o.Spend)
	if err != nil {
		return nil, err
	}
	if err := unJSONAll(models, &o.Models, metadata, &o.Metadata, permission, &o.Permission, limits, &o.Limits); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return &o, nil
}

// CreateOrg inserts o and its Budget row.
func (db *DB) CreateOrg(ctx context.Context, o *store.Org) error {
	id := o.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, meta, err := identityJSON(o.Permission, o.Metadata)
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orgs (id, alias, models, metadata, permission, limits, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$7)`, id, o.Alias, mustJSON(o.Models), meta, perm, mustJSON(o.Limits), now)
		if err != nil {
			return mapErr("create org "+id, err)
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetOrg, ID: id}, o.Limits)
	})
	if err != nil {
		return err
	}
	o.ID, o.CreatedAt, o.UpdatedAt = id, now, now
	return nil
}

// Org returns the org with the given ID.
func (db *DB) Org(ctx context.Context, id string) (*store.Org, error) {
	o, err := scanOrg(db.pool.QueryRow(ctx, `SELECT `+orgColumns+orgFrom+` WHERE o.id = $1`, id))
	if err != nil {
		return nil, mapErr("org "+id, err)
	}
	return o, nil
}

// Orgs returns every org ordered by ID.
func (db *DB) Orgs(ctx context.Context) ([]*store.Org, error) {
	return queryAll(ctx, db.pool, "list orgs", scanOrg, `SELECT `+orgColumns+orgFrom+` ORDER BY o.id`)
}

// UpdateOrg replaces the org with ID o.ID, except its creation time.
func (db *DB) UpdateOrg(ctx context.Context, o *store.Org) error {
	now := db.now()
	perm, meta, err := identityJSON(o.Permission, o.Metadata)
	if err != nil {
		return fmt.Errorf("update org: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE orgs SET alias = $1, models = $2, metadata = $3, permission = $4, limits = $5,
			updated_at = $6 WHERE id = $7`, o.Alias, mustJSON(o.Models), meta, perm, mustJSON(o.Limits), now, o.ID)
		if err != nil {
			return mapErr("update org "+o.ID, err)
		}
		if err := notFoundIfNone("update org "+o.ID, tag); err != nil {
			return err
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetOrg, ID: o.ID}, o.Limits)
	})
	if err != nil {
		return err
	}
	o.UpdatedAt = now
	return nil
}

// DeleteOrg removes the org and its Budget row; it refuses while teams are in it.
func (db *DB) DeleteOrg(ctx context.Context, id string) error {
	what := "delete org " + id
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return mapErr(what, err)
		}
		var teams int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM teams WHERE org_id = $1`, id).Scan(&teams); err != nil {
			return mapErr(what, err)
		}
		if teams > 0 {
			return fmt.Errorf("%s: %d teams still in it: %w", what, teams, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM orgs WHERE id = $1`, id); err != nil {
			return mapErr(what, err)
		}
		return mapErr(what, deleteBudget(ctx, tx, store.BudgetOrg, id))
	})
}
