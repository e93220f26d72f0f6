package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/toolgate/toolgate/store"
)

const budgetColumns = `scope, id, max_budget::float8, soft_budget::float8, duration, reset_at, spend::float8,
	reserved::float8, updated_at`

func scanBudget(sc scanner) (*store.Budget, error) {
	var (
		b     store.Budget
		scope string
	)
	if err := sc.Scan(&scope, &b.ID, &b.MaxBudget, &b.SoftBudget, &b.Duration, &b.ResetAt, &b.Spend, &b.Reserved, &b.UpdatedAt); err != nil {
		return nil, err
	}
	b.Scope = store.BudgetScope(scope)
	b.ResetAt, b.UpdatedAt = utcPtr(b.ResetAt), b.UpdatedAt.UTC()
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

// splitRefs returns the scopes and IDs of refs as two arrays for unnest.
func splitRefs(refs []store.BudgetRef) (scopes, ids []string) {
	scopes, ids = make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		scopes[i], ids[i] = string(r.Scope), r.ID
	}
	return scopes, ids
}

// lockOrder returns refs sorted so that every statement locks budget rows in the same order.
func lockOrder(refs []store.BudgetRef) []store.BudgetRef {
	s := slices.Clone(refs)
	slices.SortFunc(s, func(a, b store.BudgetRef) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.ID, b.ID))
	})
	return s
}

// retry runs fn again when it lost a deadlock or a serialization check.
func retry(fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if code := pgCode(err); (code == "40P01" || code == "40001") && attempt < 5 {
			continue
		}
		return err
	}
}

// Budget returns one budget.
func (db *DB) Budget(ctx context.Context, ref store.BudgetRef) (*store.Budget, error) {
	b, err := scanBudget(db.pool.QueryRow(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE scope = $1 AND id = $2`,
		string(ref.Scope), ref.ID))
	if err != nil {
		return nil, mapErr(fmt.Sprintf("budget %s %s", ref.Scope, ref.ID), err)
	}
	return b, nil
}

// Budgets returns the budgets that exist among refs, in refs order.
func (db *DB) Budgets(ctx context.Context, refs []store.BudgetRef) ([]*store.Budget, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	scopes, ids := splitRefs(uniqueRefs(refs))
	list, err := queryAll(ctx, db.pool, "budgets", scanBudget, `SELECT `+budgetColumns+` FROM budgets
		WHERE (scope, id) IN (SELECT s, i FROM unnest($1::text[], $2::text[]) AS r(s, i))`, scopes, ids)
	if err != nil {
		return nil, err
	}
	found := make(map[store.BudgetRef]*store.Budget, len(list))
	for _, b := range list {
		found[b.BudgetRef] = b
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
	_, err := db.pool.Exec(ctx, `INSERT INTO budgets (scope, id, max_budget, soft_budget, duration, reset_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (scope, id) DO UPDATE SET max_budget = excluded.max_budget, soft_budget = excluded.soft_budget,
			duration = excluded.duration, reset_at = excluded.reset_at, updated_at = excluded.updated_at`,
		string(b.Scope), b.ID, b.MaxBudget, b.SoftBudget, b.Duration, b.ResetAt, db.now())
	return mapErr(fmt.Sprintf("upsert budget %s %s", b.Scope, b.ID), err)
}

// DeleteBudget removes a budget row.
func (db *DB) DeleteBudget(ctx context.Context, ref store.BudgetRef) error {
	what := fmt.Sprintf("delete budget %s %s", ref.Scope, ref.ID)
	tag, err := db.pool.Exec(ctx, `DELETE FROM budgets WHERE scope = $1 AND id = $2`, string(ref.Scope), ref.ID)
	if err != nil {
		return mapErr(what, err)
	}
	return notFoundIfNone(what, tag)
}

// Reserve adds amount to Reserved on every ref, or on none when one of them would go over
// its MaxBudget. Concurrent reservations are applied in batches, one statement and one
// commit each (see batch.go); the check and the change happen under the budget rows' locks,
// so two reservations never both pass when only one fits, across replicas too.
func (db *DB) Reserve(ctx context.Context, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error {
	what := "reserve " + id
	r := db.do(&budgetOp{ctx: ctx, id: id, refs: uniqueRefs(refs), amount: amount, expires: expiresAt})
	switch {
	case r.err != nil:
		return mapErr(what, r.err)
	case r.status == "exceeded" && r.exceeded != nil:
		return r.exceeded
	case r.status == "conflict":
		return fmt.Errorf("%s: %w: reservation id in use", what, store.ErrConflict)
	case r.status != "ok":
		return fmt.Errorf("%s: unexpected batch status %q", what, r.status)
	}
	return nil
}

// Settle closes reservation id and charges actual to its budgets (or to refs when the
// reservation is gone), batched like Reserve.
func (db *DB) Settle(ctx context.Context, id string, refs []store.BudgetRef, actual float64) error {
	r := db.do(&budgetOp{ctx: ctx, settle: true, id: id, refs: uniqueRefs(refs), amount: actual})
	if r.err == nil && r.status != "ok" {
		r.err = fmt.Errorf("unexpected batch status %q", r.status)
	}
	return mapErr("settle "+id, r.err)
}

// ReleaseExpired releases reservations whose expiry is before now.
func (db *DB) ReleaseExpired(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := retry(func() error {
		return db.pool.QueryRow(ctx, `WITH d AS (
			DELETE FROM budget_reservations WHERE expires_at < $1 RETURNING ref_scopes, ref_ids, amount
		), r AS (
			SELECT u.s, u.i, sum(d.amount) AS amount FROM d, unnest(d.ref_scopes, d.ref_ids) AS u(s, i) GROUP BY u.s, u.i
		), upd AS (
			UPDATE budgets b SET reserved = GREATEST(b.reserved - r.amount, 0), updated_at = $2
			FROM r WHERE b.scope = r.s AND b.id = r.i
			RETURNING 1
		)
		SELECT count(*) FROM d`, now, db.now()).Scan(&n)
	})
	if err != nil {
		return 0, mapErr("release expired reservations", err)
	}
	return n, nil
}

// DueBudgets returns budgets whose ResetAt is not after now.
func (db *DB) DueBudgets(ctx context.Context, now time.Time) ([]*store.Budget, error) {
	return queryAll(ctx, db.pool, "due budgets", scanBudget, `SELECT `+budgetColumns+` FROM budgets
		WHERE reset_at IS NOT NULL AND reset_at <= $1 ORDER BY reset_at, scope, id`, now)
}

// ResetBudget zeroes Spend and moves ResetAt to next if ResetAt still equals expect.
func (db *DB) ResetBudget(ctx context.Context, ref store.BudgetRef, expect time.Time, next time.Time) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE budgets SET spend = 0, reset_at = $1, updated_at = $2
		WHERE scope = $3 AND id = $4 AND reset_at = $5`, nullTime(next), db.now(), string(ref.Scope), ref.ID, expect)
	if err != nil {
		return false, mapErr(fmt.Sprintf("reset budget %s %s", ref.Scope, ref.ID), err)
	}
	return tag.RowsAffected() == 1, nil
}

// AcquireLease takes or renews the named lease for holder until now+ttl.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := db.now()
	tag, err := db.pool.Exec(ctx, `INSERT INTO leases AS l (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE l.holder = excluded.holder OR l.expires_at <= $4`, name, holder, now.Add(ttl), now)
	if err != nil {
		return false, mapErr("acquire lease "+name, err)
	}
	return tag.RowsAffected() == 1, nil
}
