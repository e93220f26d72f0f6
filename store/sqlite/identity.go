package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

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
	_, err = q.ExecContext(ctx, `INSERT INTO budgets (scope, id, max_budget, soft_budget, duration, reset_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (scope, id) DO UPDATE SET
			max_budget = excluded.max_budget,
			soft_budget = excluded.soft_budget,
			reset_at = CASE WHEN budgets.duration = excluded.duration AND budgets.reset_at IS NOT NULL
				THEN budgets.reset_at ELSE excluded.reset_at END,
			duration = excluded.duration,
			updated_at = excluded.updated_at`,
		string(ref.Scope), ref.ID, l.MaxBudget, l.SoftBudget, l.BudgetDuration, nullTime(next), fmtTime(now))
	if err != nil {
		return mapErr(fmt.Sprintf("budget %s %s", ref.Scope, ref.ID), err)
	}
	return nil
}

func deleteBudget(ctx context.Context, q queryer, scope store.BudgetScope, id string) error {
	_, err := q.ExecContext(ctx, `DELETE FROM budgets WHERE scope = ? AND id = ?`, string(scope), id)
	return err
}

func memberID(teamID, userID string) string { return teamID + "/" + userID }

// syncModelCaps mirrors a key's or team's per-model caps into Budget rows of scope: those
// listed are created or updated (their spend kept), the owner's others deleted.
func (db *DB) syncModelCaps(ctx context.Context, tx *sql.Tx, scope store.BudgetScope, ownerID string, caps map[string]store.ModelBudget) error {
	prefix := store.ModelCapID(ownerID, "")
	keep := make([]string, 0, len(caps))
	for model := range caps {
		keep = append(keep, prefix+model)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE scope = ? AND substr(id, 1, ?) = ?
		AND id NOT IN (SELECT value FROM json_each(?))`, string(scope), len(prefix), prefix, mustJSON(keep)); err != nil {
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
	k.created_by, k.created_at, k.updated_at, COALESCE(b.spend, 0)`

const keyFrom = ` FROM keys k LEFT JOIN budgets b ON b.scope = 'key' AND b.id = k.id`

func scanKey(sc scanner) (*store.Key, error) {
	var (
		k                                          store.Key
		alias, expires                             sql.NullString
		models, metadata, tags, permission, limits string
		created, updated                           string
	)
	err := sc.Scan(&k.ID, &k.TokenHash, &k.KeyName, &alias, &k.UserID, &k.TeamID, &k.OrgID, &models,
		&expires, &k.Blocked, &metadata, &tags, &permission, &limits, &k.AllowClientSideCredentials,
		&k.CreatedBy, &created, &updated, &k.Spend)
	if err != nil {
		return nil, err
	}
	k.KeyAlias = alias.String
	if err := unJSONAll(models, &k.Models, metadata, &k.Metadata, tags, &k.Tags, permission, &k.Permission, limits, &k.Limits); err != nil {
		return nil, err
	}
	if k.Expires, err = parsePtrTime(expires); err != nil {
		return nil, err
	}
	if k.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if k.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &k, nil
}

// unJSONAll decodes pairs of (text, destination).
func unJSONAll(pairs ...any) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := unJSON(pairs[i].(string), pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// CreateKey inserts k and its Budget row.
func (db *DB) CreateKey(ctx context.Context, k *store.Key) error {
	id := k.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, err := jsonText(k.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(k.Metadata)
	if err != nil {
		return fmt.Errorf("create key: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (id, token_hash, key_name, key_alias, user_id, team_id, org_id,
			models, expires, blocked, metadata, tags, permission, limits, allow_client_side_credentials,
			created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			id, k.TokenHash, k.KeyName, nullString(k.KeyAlias), k.UserID, k.TeamID, k.OrgID, mustJSON(k.Models),
			ptrTime(k.Expires), k.Blocked, meta, mustJSON(k.Tags), perm, mustJSON(k.Limits),
			k.AllowClientSideCredentials, k.CreatedBy, fmtTime(now), fmtTime(now))
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

// Key returns the key with the given ID.
func (db *DB) Key(ctx context.Context, id string) (*store.Key, error) {
	k, err := scanKey(db.db.QueryRowContext(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.id = ?`, id))
	if err != nil {
		return nil, mapErr("key "+id, err)
	}
	return k, nil
}

// KeyByHash returns the key whose token hash is hash, or whose previous hash is hash and
// still inside its grace period at now.
func (db *DB) KeyByHash(ctx context.Context, hash string, now time.Time) (*store.Key, error) {
	k, err := scanKey(db.db.QueryRowContext(ctx, `SELECT `+keyColumns+keyFrom+`
		WHERE k.token_hash = ?1
		   OR k.id = (SELECT key_id FROM key_grace_hashes WHERE token_hash = ?1 AND grace_until > ?2)
		ORDER BY k.token_hash = ?1 DESC LIMIT 1`, hash, fmtTime(now)))
	if err != nil {
		return nil, mapErr("key by hash", err)
	}
	return k, nil
}

// KeyByAlias returns the key with that alias.
func (db *DB) KeyByAlias(ctx context.Context, alias string) (*store.Key, error) {
	if alias == "" {
		return nil, fmt.Errorf("key by alias: empty alias: %w", store.ErrNotFound)
	}
	k, err := scanKey(db.db.QueryRowContext(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.key_alias = ?`, alias))
	if err != nil {
		return nil, mapErr("key by alias "+alias, err)
	}
	return k, nil
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
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	q := `SELECT ` + keyColumns + keyFrom
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY k.created_at, k.id LIMIT ? OFFSET ?"
	args = append(args, limitArg(f.Limit), f.Offset)
	return queryKeys(ctx, db.db, q, args...)
}

func queryKeys(ctx context.Context, q queryer, query string, args ...any) ([]*store.Key, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr("list keys", err)
	}
	defer rows.Close()
	var out []*store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, mapErr("list keys", err)
		}
		out = append(out, k)
	}
	return out, mapErr("list keys", rows.Err())
}

// limitArg turns "0 means no limit" into SQLite's -1.
func limitArg(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// UpdateKey replaces the key with ID k.ID, except its hash, name and creation fields.
func (db *DB) UpdateKey(ctx context.Context, k *store.Key) error {
	now := db.now()
	perm, err := jsonText(k.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(k.Metadata)
	if err != nil {
		return fmt.Errorf("update key: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE keys SET key_alias = ?, user_id = ?, team_id = ?, org_id = ?,
			models = ?, expires = ?, blocked = ?, metadata = ?, tags = ?, permission = ?, limits = ?,
			allow_client_side_credentials = ?, updated_at = ? WHERE id = ?`,
			nullString(k.KeyAlias), k.UserID, k.TeamID, k.OrgID, mustJSON(k.Models), ptrTime(k.Expires), k.Blocked,
			meta, mustJSON(k.Tags), perm, mustJSON(k.Limits), k.AllowClientSideCredentials, fmtTime(now), k.ID)
		if err != nil {
			return mapErr("update key "+k.ID, err)
		}
		if err := notFoundIfNone("update key "+k.ID, res); err != nil {
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
	var k *store.Key
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var old string
		if err := tx.QueryRowContext(ctx, `SELECT token_hash FROM keys WHERE id = ?`, id).Scan(&old); err != nil {
			return mapErr("regenerate key "+id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET token_hash = ?, key_name = ?, updated_at = ? WHERE id = ?`,
			newHash, newKeyName, fmtTime(now), id); err != nil {
			return mapErr("regenerate key "+id, err)
		}
		// The new hash supersedes any grace entry for it; the old one gets its grace.
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_grace_hashes WHERE token_hash = ? OR grace_until <= ?`,
			newHash, fmtTime(now)); err != nil {
			return mapErr("regenerate key "+id, err)
		}
		if graceUntil.After(now) && old != newHash {
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_grace_hashes (token_hash, key_id, grace_until) VALUES (?, ?, ?)
				ON CONFLICT (token_hash) DO UPDATE SET key_id = excluded.key_id, grace_until = excluded.grace_until`,
				old, id, fmtTime(graceUntil)); err != nil {
				return mapErr("regenerate key "+id, err)
			}
		}
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.id = ?`, id))
		return mapErr("regenerate key "+id, err)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// DeleteKey removes the key, its grace hashes and its Budget row.
func (db *DB) DeleteKey(ctx context.Context, id string) error {
	return db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE id = ?`, id)
		if err != nil {
			return mapErr("delete key "+id, err)
		}
		if err := notFoundIfNone("delete key "+id, res); err != nil {
			return err
		}
		if err := deleteBudget(ctx, tx, store.BudgetKey, id); err != nil {
			return mapErr("delete key "+id, err)
		}
		return mapErr("delete key "+id, db.syncModelCaps(ctx, tx, store.BudgetKeyModel, id, nil))
	})
}

// deleteKeysWhere removes the keys matching cond (a condition on keys' columns) and their
// Budget rows.
func deleteKeysWhere(ctx context.Context, tx *sql.Tx, cond string, arg any) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE scope = 'key'
		AND id IN (SELECT id FROM keys WHERE `+cond+`)`, arg); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE scope = 'key_model'
		AND substr(id, 1, instr(id, '/') - 1) IN (SELECT id FROM keys WHERE `+cond+`)`, arg); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE `+cond, arg)
	return err
}

// ---- users

const userColumns = `u.id, u.email, u.role, u.org_id, u.models, u.metadata, u.permission, u.limits,
	u.created_at, u.updated_at, COALESCE(b.spend, 0)`

const userFrom = ` FROM users u LEFT JOIN budgets b ON b.scope = 'user' AND b.id = u.id`

func scanUser(sc scanner) (*store.User, error) {
	var (
		u                                    store.User
		email                                sql.NullString
		models, metadata, permission, limits string
		created, updated                     string
	)
	err := sc.Scan(&u.ID, &email, &u.Role, &u.OrgID, &models, &metadata, &permission, &limits, &created, &updated, &u.Spend)
	if err != nil {
		return nil, err
	}
	u.Email = email.String
	if err := unJSONAll(models, &u.Models, metadata, &u.Metadata, permission, &u.Permission, limits, &u.Limits); err != nil {
		return nil, err
	}
	if u.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if u.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &u, nil
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
	perm, err := jsonText(u.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(u.Metadata)
	if err != nil {
		return fmt.Errorf("create user: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, role, org_id, models, metadata, permission, limits,
			created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)`,
			id, nullString(u.Email), role, u.OrgID, mustJSON(u.Models), meta, perm, mustJSON(u.Limits), fmtTime(now), fmtTime(now))
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
	u, err := scanUser(db.db.QueryRowContext(ctx, `SELECT `+userColumns+userFrom+` WHERE u.id = ?`, id))
	if err != nil {
		return nil, mapErr("user "+id, err)
	}
	return u, nil
}

// Users returns users ordered by ID.
func (db *DB) Users(ctx context.Context, limit, offset int) ([]*store.User, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+userColumns+userFrom+` ORDER BY u.id LIMIT ? OFFSET ?`, limitArg(limit), offset)
	if err != nil {
		return nil, mapErr("list users", err)
	}
	defer rows.Close()
	var out []*store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, mapErr("list users", err)
		}
		out = append(out, u)
	}
	return out, mapErr("list users", rows.Err())
}

// UpdateUser replaces the user with ID u.ID, except its creation time.
func (db *DB) UpdateUser(ctx context.Context, u *store.User) error {
	role := u.Role
	if role == "" {
		role = store.RoleInternalUser
	}
	now := db.now()
	perm, err := jsonText(u.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(u.Metadata)
	if err != nil {
		return fmt.Errorf("update user: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET email = ?, role = ?, org_id = ?, models = ?, metadata = ?,
			permission = ?, limits = ?, updated_at = ? WHERE id = ?`,
			nullString(u.Email), role, u.OrgID, mustJSON(u.Models), meta, perm, mustJSON(u.Limits), fmtTime(now), u.ID)
		if err != nil {
			return mapErr("update user "+u.ID, err)
		}
		if err := notFoundIfNone("update user "+u.ID, res); err != nil {
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
	return db.inTx(ctx, func(tx *sql.Tx) error {
		what := "delete user " + id
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE id = ?`, id).Scan(&n); err != nil {
			return mapErr(what, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", what, store.ErrNotFound)
		}
		if err := deleteKeysWhere(ctx, tx, "user_id = ?", id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE scope = 'team_member'
			AND id IN (SELECT team_id || '/' || user_id FROM team_members WHERE user_id = ?)`, id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM team_members WHERE user_id = ?`, id); err != nil {
			return mapErr(what, err)
		}
		if err := deleteBudget(ctx, tx, store.BudgetUser, id); err != nil {
			return mapErr(what, err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
		return mapErr(what, err)
	})
}

// ---- teams

const teamColumns = `t.id, t.alias, t.org_id, t.models, t.blocked, t.metadata, t.permission, t.limits,
	t.created_at, t.updated_at, COALESCE(b.spend, 0)`

const teamFrom = ` FROM teams t LEFT JOIN budgets b ON b.scope = 'team' AND b.id = t.id`

func scanTeam(sc scanner) (*store.Team, error) {
	var (
		t                                    store.Team
		models, metadata, permission, limits string
		created, updated                     string
	)
	err := sc.Scan(&t.ID, &t.Alias, &t.OrgID, &models, &t.Blocked, &metadata, &permission, &limits, &created, &updated, &t.Spend)
	if err != nil {
		return nil, err
	}
	if err := unJSONAll(models, &t.Models, metadata, &t.Metadata, permission, &t.Permission, limits, &t.Limits); err != nil {
		return nil, err
	}
	if t.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if t.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateTeam inserts t and its Budget row.
func (db *DB) CreateTeam(ctx context.Context, t *store.Team) error {
	id := t.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, err := jsonText(t.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(t.Metadata)
	if err != nil {
		return fmt.Errorf("create team: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO teams (id, alias, org_id, models, blocked, metadata, permission, limits,
			created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)`,
			id, t.Alias, t.OrgID, mustJSON(t.Models), t.Blocked, meta, perm, mustJSON(t.Limits), fmtTime(now), fmtTime(now))
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
	t, err := scanTeam(db.db.QueryRowContext(ctx, `SELECT `+teamColumns+teamFrom+` WHERE t.id = ?`, id))
	if err != nil {
		return nil, mapErr("team "+id, err)
	}
	return t, nil
}

// Teams returns the teams of an org ("" for all) ordered by ID.
func (db *DB) Teams(ctx context.Context, orgID string) ([]*store.Team, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+teamColumns+teamFrom+` WHERE ? = '' OR t.org_id = ? ORDER BY t.id`, orgID, orgID)
	if err != nil {
		return nil, mapErr("list teams", err)
	}
	defer rows.Close()
	var out []*store.Team
	for rows.Next() {
		t, err := scanTeam(rows)
		if err != nil {
			return nil, mapErr("list teams", err)
		}
		out = append(out, t)
	}
	return out, mapErr("list teams", rows.Err())
}

// UpdateTeam replaces the team with ID t.ID, except its creation time.
func (db *DB) UpdateTeam(ctx context.Context, t *store.Team) error {
	now := db.now()
	perm, err := jsonText(t.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(t.Metadata)
	if err != nil {
		return fmt.Errorf("update team: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE teams SET alias = ?, org_id = ?, models = ?, blocked = ?, metadata = ?,
			permission = ?, limits = ?, updated_at = ? WHERE id = ?`,
			t.Alias, t.OrgID, mustJSON(t.Models), t.Blocked, meta, perm, mustJSON(t.Limits), fmtTime(now), t.ID)
		if err != nil {
			return mapErr("update team "+t.ID, err)
		}
		if err := notFoundIfNone("update team "+t.ID, res); err != nil {
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
	return db.inTx(ctx, func(tx *sql.Tx) error {
		what := "delete team " + id
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM teams WHERE id = ?`, id).Scan(&n); err != nil {
			return mapErr(what, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", what, store.ErrNotFound)
		}
		if err := deleteKeysWhere(ctx, tx, "team_id = ?", id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE scope = 'team_member'
			AND id IN (SELECT team_id || '/' || user_id FROM team_members WHERE team_id = ?)`, id); err != nil {
			return mapErr(what, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM team_members WHERE team_id = ?`, id); err != nil {
			return mapErr(what, err)
		}
		if err := db.syncModelCaps(ctx, tx, store.BudgetTeamModel, id, nil); err != nil {
			return mapErr("delete team "+id, err)
		}
		if err := deleteBudget(ctx, tx, store.BudgetTeam, id); err != nil {
			return mapErr(what, err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM teams WHERE id = ?`, id)
		return mapErr(what, err)
	})
}

// ---- team members

const memberColumns = `m.team_id, m.user_id, m.role, m.limits, COALESCE(b.spend, 0)`

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
	return db.inTx(ctx, func(tx *sql.Tx) error {
		var teams, users int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM teams WHERE id = ?), (SELECT COUNT(*) FROM users WHERE id = ?)`,
			m.TeamID, m.UserID).Scan(&teams, &users); err != nil {
			return mapErr(what, err)
		}
		if teams == 0 {
			return fmt.Errorf("%s: team: %w", what, store.ErrNotFound)
		}
		if users == 0 {
			return fmt.Errorf("%s: user: %w", what, store.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO team_members (team_id, user_id, role, limits) VALUES (?, ?, ?, ?)`,
			m.TeamID, m.UserID, m.Role, mustJSON(m.Limits)); err != nil {
			return mapErr(what, err)
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeamMember, ID: memberID(m.TeamID, m.UserID)}, m.Limits)
	})
}

// UpdateTeamMember replaces a member's role and limits.
func (db *DB) UpdateTeamMember(ctx context.Context, m *store.TeamMember) error {
	what := fmt.Sprintf("update member %s of team %s", m.UserID, m.TeamID)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE team_members SET role = ?, limits = ? WHERE team_id = ? AND user_id = ?`,
			m.Role, mustJSON(m.Limits), m.TeamID, m.UserID)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, res); err != nil {
			return err
		}
		return db.upsertLimits(ctx, tx, store.BudgetRef{Scope: store.BudgetTeamMember, ID: memberID(m.TeamID, m.UserID)}, m.Limits)
	})
}

// RemoveTeamMember removes a membership and its Budget row.
func (db *DB) RemoveTeamMember(ctx context.Context, teamID, userID string) error {
	what := fmt.Sprintf("remove member %s from team %s", userID, teamID)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM team_members WHERE team_id = ? AND user_id = ?`, teamID, userID)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, res); err != nil {
			return err
		}
		return mapErr(what, deleteBudget(ctx, tx, store.BudgetTeamMember, memberID(teamID, userID)))
	})
}

func (db *DB) queryMembers(ctx context.Context, what, query string, arg string) ([]*store.TeamMember, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+memberColumns+memberFrom+` WHERE `+query, arg)
	if err != nil {
		return nil, mapErr(what, err)
	}
	defer rows.Close()
	var out []*store.TeamMember
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, mapErr(what, err)
		}
		out = append(out, m)
	}
	return out, mapErr(what, rows.Err())
}

// TeamMembers returns the members of a team ordered by UserID.
func (db *DB) TeamMembers(ctx context.Context, teamID string) ([]*store.TeamMember, error) {
	return db.queryMembers(ctx, "members of team "+teamID, `m.team_id = ? ORDER BY m.user_id`, teamID)
}

// Memberships returns the memberships of a user ordered by TeamID.
func (db *DB) Memberships(ctx context.Context, userID string) ([]*store.TeamMember, error) {
	return db.queryMembers(ctx, "memberships of user "+userID, `m.user_id = ? ORDER BY m.team_id`, userID)
}

// ---- orgs

const orgColumns = `o.id, o.alias, o.models, o.metadata, o.permission, o.limits, o.created_at, o.updated_at,
	COALESCE(b.spend, 0)`

const orgFrom = ` FROM orgs o LEFT JOIN budgets b ON b.scope = 'org' AND b.id = o.id`

func scanOrg(sc scanner) (*store.Org, error) {
	var (
		o                                    store.Org
		models, metadata, permission, limits string
		created, updated                     string
	)
	err := sc.Scan(&o.ID, &o.Alias, &models, &metadata, &permission, &limits, &created, &updated, &o.Spend)
	if err != nil {
		return nil, err
	}
	if err := unJSONAll(models, &o.Models, metadata, &o.Metadata, permission, &o.Permission, limits, &o.Limits); err != nil {
		return nil, err
	}
	if o.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if o.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &o, nil
}

// CreateOrg inserts o and its Budget row.
func (db *DB) CreateOrg(ctx context.Context, o *store.Org) error {
	id := o.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	perm, err := jsonText(o.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(o.Metadata)
	if err != nil {
		return fmt.Errorf("create org: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orgs (id, alias, models, metadata, permission, limits, created_at, updated_at)
			VALUES (?,?,?,?,?,?,?,?)`, id, o.Alias, mustJSON(o.Models), meta, perm, mustJSON(o.Limits), fmtTime(now), fmtTime(now))
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
	o, err := scanOrg(db.db.QueryRowContext(ctx, `SELECT `+orgColumns+orgFrom+` WHERE o.id = ?`, id))
	if err != nil {
		return nil, mapErr("org "+id, err)
	}
	return o, nil
}

// Orgs returns every org ordered by ID.
func (db *DB) Orgs(ctx context.Context) ([]*store.Org, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+orgColumns+orgFrom+` ORDER BY o.id`)
	if err != nil {
		return nil, mapErr("list orgs", err)
	}
	defer rows.Close()
	var out []*store.Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, mapErr("list orgs", err)
		}
		out = append(out, o)
	}
	return out, mapErr("list orgs", rows.Err())
}

// UpdateOrg replaces the org with ID o.ID, except its creation time.
func (db *DB) UpdateOrg(ctx context.Context, o *store.Org) error {
	now := db.now()
	perm, err := jsonText(o.Permission)
	if err != nil {
		return err
	}
	meta, err := jsonText(o.Metadata)
	if err != nil {
		return fmt.Errorf("update org: metadata: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE orgs SET alias = ?, models = ?, metadata = ?, permission = ?, limits = ?,
			updated_at = ? WHERE id = ?`, o.Alias, mustJSON(o.Models), meta, perm, mustJSON(o.Limits), fmtTime(now), o.ID)
		if err != nil {
			return mapErr("update org "+o.ID, err)
		}
		if err := notFoundIfNone("update org "+o.ID, res); err != nil {
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
	return db.inTx(ctx, func(tx *sql.Tx) error {
		var teams int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM teams WHERE org_id = ?`, id).Scan(&teams); err != nil {
			return mapErr(what, err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM orgs WHERE id = ?`, id)
		if err != nil {
			return mapErr(what, err)
		}
		if err := notFoundIfNone(what, res); err != nil {
			return err
		}
		if teams > 0 {
			return fmt.Errorf("%s: %d teams still in it: %w", what, teams, store.ErrConflict)
		}
		return mapErr(what, deleteBudget(ctx, tx, store.BudgetOrg, id))
	})
}
