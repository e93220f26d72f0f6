package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
)

const budgetColumns = `scope, id, max_budget, soft_budget, duration, reset_at, spend, reserved, updated_at`

func scanBudget(sc scanner) (*store.Budget, error) {
	var (
		b           store.Budget
		scope       string
		maxB, softB sql.NullFloat64
		resetAt     sql.NullString
		updated     string
	)
	if err := sc.Scan(&scope, &b.ID, &maxB, &softB, &b.Duration, &resetAt, &b.Spend, &b.Reserved, &updated); err != nil {
		return nil, err
	}
	b.Scope = store.BudgetScope(scope)
	if maxB.Valid {
		b.MaxBudget = &maxB.Float64
	}
	if softB.Valid {
		b.SoftBudget = &softB.Float64
	}
	var err error
	if b.ResetAt, err = parsePtrTime(resetAt); err != nil {
		return nil, err
	}
	if b.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &b, nil
}

// uniqueRefs drops repeated refs, keeping the first of each.
func uniqueRefs(refs []store.BudgetRef) []store.BudgetRef {
	out := make([]store.BudgetRef, 0, len(refs))
	seen := make(map[store.BudgetRef]bool, len(refs))
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// refValues returns "(?, ?), (?, ?)..." and its arguments for refs.
func refValues(refs []store.BudgetRef) (string, []any) {
	var sb strings.Builder
	args := make([]any, 0, 2*len(refs))
	for i, r := range refs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?)")
		args = append(args, string(r.Scope), r.ID)
	}
	return sb.String(), args
}

// Budget returns one budget.
func (db *DB) Budget(ctx context.Context, ref store.BudgetRef) (*store.Budget, error) {
	b, err := scanBudget(db.db.QueryRowContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE scope = ? AND id = ?`,
		string(ref.Scope), ref.ID))
	if err != nil {
		return nil, mapErr(fmt.Sprintf("budget %s %s", ref.Scope, ref.ID), err)
	}
	return b, nil
}

// Budgets returns the budgets that exist among refs, in refs order.
func (db *DB) Budgets(ctx context.Context, refs []store.BudgetRef) ([]*store.Budget, error) {
	return budgetsOf(ctx, preparedDB{db}, refs)
}

// preparedDB runs reads through DB's prepared statements: the budget core reads a
// request's budgets on every LLM call.
type preparedDB struct{ db *DB }

func (p preparedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.db.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func budgetsOf(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, refs []store.BudgetRef) ([]*store.Budget, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	values, args := refValues(uniqueRefs(refs))
	rows, err := q.QueryContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE (scope, id) IN (VALUES `+values+`)`, args...)
	if err != nil {
		return nil, mapErr("budgets", err)
	}
	defer rows.Close()
	found := make(map[store.BudgetRef]*store.Budget, len(refs))
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, mapErr("budgets", err)
		}
		found[b.BudgetRef] = b
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("budgets", err)
	}
	var out []*store.Budget
	for _, r := range refs {
		if b, ok := found[r]; ok {
			out = append(out, b)
		}
	}
	return out, nil
}

// UpsertBudgetLimits creates b's row if absent and sets its limits and reset time.
func (db *DB) UpsertBudgetLimits(ctx context.Context, b *store.Budget) error {
	_, err := db.exec(ctx, `INSERT INTO budgets (scope, id, max_budget, soft_budget, duration, reset_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (scope, id) DO UPDATE SET max_budget = excluded.max_budget, soft_budget = excluded.soft_budget,
			duration = excluded.duration, reset_at = excluded.reset_at, updated_at = excluded.updated_at`,
		string(b.Scope), b.ID, b.MaxBudget, b.SoftBudget, b.Duration, ptrTime(b.ResetAt), fmtTime(db.now()))
	return mapErr(fmt.Sprintf("upsert budget %s %s", b.Scope, b.ID), err)
}

// DeleteBudget removes a budget row.
func (db *DB) DeleteBudget(ctx context.Context, ref store.BudgetRef) error {
	what := fmt.Sprintf("delete budget %s %s", ref.Scope, ref.ID)
	res, err := db.exec(ctx, `DELETE FROM budgets WHERE scope = ? AND id = ?`, string(ref.Scope), ref.ID)
	if err != nil {
		return mapErr(what, err)
	}
	return notFoundIfNone(what, res)
}

// Reserve adds amount to Reserved on every ref, or on none when one of them would go over
// its MaxBudget. Reservations and settlements are group-committed (see batch.go): each is
// applied alone, in order, inside the one write transaction (BEGIN IMMEDIATE) of its batch,
// so concurrent reservations stay serialized and atomic.
func (db *DB) Reserve(ctx context.Context, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error {
	return db.budgetDo(ctx, func(ctx context.Context, tx queryer, now time.Time) error {
		return reserveTx(ctx, tx, fmtTime(now), id, refs, amount, expiresAt)
	})
}

func reserveTx(ctx context.Context, tx queryer, now, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error {
	refs = uniqueRefs(refs)
	refsJSON, err := json.Marshal(refs)
	if err != nil {
		return fmt.Errorf("reserve %s: %w", id, err)
	}
	what := "reserve " + id
	if _, err := tx.ExecContext(ctx, `INSERT INTO budget_reservations (id, refs, amount, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?)`, id, string(refsJSON), amount, fmtTime(expiresAt), now); err != nil {
		return mapErr(what, err)
	}
	if len(refs) == 0 {
		return nil
	}
	// One upsert: missing rows are created (no limit, so the amount fits); existing rows
	// take the amount only where it fits. RETURNING names the rows that took it.
	ins := strings.Repeat("(?, ?, ?, ?), ", len(refs))
	args := make([]any, 0, 4*len(refs)+1)
	for _, r := range refs {
		args = append(args, string(r.Scope), r.ID, amount, now)
	}
	args = append(args, epsilon)
	rows, err := tx.QueryContext(ctx, `INSERT INTO budgets AS b (scope, id, reserved, updated_at)
		VALUES `+strings.TrimSuffix(ins, ", ")+`
		ON CONFLICT (scope, id) DO UPDATE SET reserved = b.reserved + excluded.reserved, updated_at = excluded.updated_at
		WHERE b.max_budget IS NULL OR b.spend + b.reserved + excluded.reserved <= b.max_budget + ?
		RETURNING scope, id`, args...)
	if err != nil {
		return mapErr(what, err)
	}
	ok := make(map[store.BudgetRef]bool, len(refs))
	for rows.Next() {
		var r store.BudgetRef
		var scope string
		if err := rows.Scan(&scope, &r.ID); err != nil {
			rows.Close()
			return mapErr(what, err)
		}
		r.Scope = store.BudgetScope(scope)
		ok[r] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return mapErr(what, err)
	}
	if len(ok) == len(refs) {
		return nil
	}
	// Rows that refused were left unchanged: report the first in refs order.
	for _, r := range refs {
		if ok[r] {
			continue
		}
		b, err := scanBudget(tx.QueryRowContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE scope = ? AND id = ?`,
			string(r.Scope), r.ID))
		if err != nil {
			return mapErr(what, err)
		}
		e := &store.BudgetExceededError{Scope: b.Scope, ID: b.ID, Spend: b.Spend, Reserved: b.Reserved}
		if b.MaxBudget != nil {
			e.MaxBudget = *b.MaxBudget
		}
		return e
	}
	return fmt.Errorf("%s: budgets changed under the reservation", what)
}

// releaseAmount is the SQL that takes ? (twice) off reserved, never below zero.
const releaseAmount = `CASE WHEN reserved - ? < 1e-9 THEN 0 ELSE reserved - ? END`

// Settle closes reservation id and charges actual to its budgets (or to refs when the
// reservation is gone).
func (db *DB) Settle(ctx context.Context, id string, refs []store.BudgetRef, actual float64) error {
	return db.budgetDo(ctx, func(ctx context.Context, tx queryer, now time.Time) error {
		return settleTx(ctx, tx, fmtTime(now), id, refs, actual)
	})
}

func settleTx(ctx context.Context, tx queryer, now, id string, refs []store.BudgetRef, actual float64) error {
	what := "settle " + id
	var (
		refsJSON string
		amount   float64
	)
	err := tx.QueryRowContext(ctx, `DELETE FROM budget_reservations WHERE id = ? RETURNING refs, amount`, id).Scan(&refsJSON, &amount)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		refs = uniqueRefs(refs)
	case err != nil:
		return mapErr(what, err)
	default:
		refs = nil
		if err := unJSON(refsJSON, &refs); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	for _, r := range refs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO budgets (scope, id, spend, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (scope, id) DO UPDATE SET spend = spend + excluded.spend,
				reserved = `+releaseAmount+`, updated_at = excluded.updated_at`,
			string(r.Scope), r.ID, actual, now, amount, amount); err != nil {
			return mapErr(what, err)
		}
	}
	return nil
}

// ReleaseExpired releases reservations whose expiry is before now.
func (db *DB) ReleaseExpired(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM budget_reservations WHERE expires_at < ? RETURNING refs, amount`, fmtTime(now))
		if err != nil {
			return mapErr("release expired reservations", err)
		}
		type res struct {
			refs   []store.BudgetRef
			amount float64
		}
		var released []res
		for rows.Next() {
			var (
				r        res
				refsJSON string
			)
			if err := rows.Scan(&refsJSON, &r.amount); err != nil {
				rows.Close()
				return mapErr("release expired reservations", err)
			}
			if err := unJSON(refsJSON, &r.refs); err != nil {
				rows.Close()
				return err
			}
			released = append(released, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return mapErr("release expired reservations", err)
		}
		stamp := fmtTime(db.now())
		for _, r := range released {
			for _, ref := range r.refs {
				if _, err := tx.ExecContext(ctx, `UPDATE budgets SET reserved = `+releaseAmount+`, updated_at = ?
					WHERE scope = ? AND id = ?`, r.amount, r.amount, stamp, string(ref.Scope), ref.ID); err != nil {
					return mapErr("release expired reservations", err)
				}
			}
		}
		n = len(released)
		return nil
	})
	return n, err
}

// DueBudgets returns budgets whose ResetAt is not after now.
func (db *DB) DueBudgets(ctx context.Context, now time.Time) ([]*store.Budget, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+budgetColumns+` FROM budgets
		WHERE reset_at IS NOT NULL AND reset_at <= ? ORDER BY reset_at, scope, id`, fmtTime(now))
	if err != nil {
		return nil, mapErr("due budgets", err)
	}
	defer rows.Close()
	var out []*store.Budget
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, mapErr("due budgets", err)
		}
		out = append(out, b)
	}
	return out, mapErr("due budgets", rows.Err())
}

// ResetBudget zeroes Spend and moves ResetAt to next if ResetAt still equals expect.
func (db *DB) ResetBudget(ctx context.Context, ref store.BudgetRef, expect time.Time, next time.Time) (bool, error) {
	res, err := db.exec(ctx, `UPDATE budgets SET spend = 0, reset_at = ?, updated_at = ?
		WHERE scope = ? AND id = ? AND reset_at = ?`, nullTime(next), fmtTime(db.now()), string(ref.Scope), ref.ID, fmtTime(expect))
	if err != nil {
		return false, mapErr(fmt.Sprintf("reset budget %s %s", ref.Scope, ref.ID), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, mapErr(fmt.Sprintf("reset budget %s %s", ref.Scope, ref.ID), err)
	}
	return n == 1, nil
}

// AcquireLease takes or renews the named lease for holder until now+ttl.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := db.now()
	unlock, err := db.lockWrite(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	var got string
	err = db.db.QueryRowContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
		RETURNING holder`, name, holder, fmtTime(now.Add(ttl)), fmtTime(now)).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, mapErr("acquire lease "+name, err)
	}
	return got == holder, nil
}
