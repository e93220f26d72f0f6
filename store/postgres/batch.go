package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/toolgate/toolgate/store"
)

// Budget admissions are group-committed. With synchronous commit every transaction that
// changes a budget row holds the row's lock until its commit is flushed to disk, so one
// key's admissions would go one flush at a time (a few hundred a second on an ordinary
// disk). Instead Reserve and Settle queue an operation; a runner takes everything queued,
// applies it in one statement (toolgate_budget_batch, one round trip and one commit) and
// hands each caller its own result. An idle gateway sends each operation at once, so a lone
// request waits for nothing; under load the batches grow and the flushes are shared.

// maxBatch caps the operations in one statement.
const maxBatch = 512

// batchRunners is how many batches may be in flight at once. Batches touching the same
// budget serialize on its row lock, so a second runner only halves the batches a hot key's
// admissions are grouped into (measured: one runner admits about twice as many per second
// as two on one key).
const batchRunners = 1

// batchTimeout bounds one batch statement. Callers wait for their result even when their
// own context ends, so that a reservation made is never reported as not made.
const batchTimeout = time.Minute

type budgetOp struct {
	ctx     context.Context
	settle  bool
	id      string
	refs    []store.BudgetRef // reserve: in refs order; settle: charged if the reservation is gone
	amount  float64
	expires time.Time
	done    chan budgetResult
}

type budgetResult struct {
	status   string // "ok", "exceeded" or "conflict"
	exceeded *store.BudgetExceededError
	err      error
}

// do queues op and waits for its result.
func (db *DB) do(op *budgetOp) budgetResult {
	op.done = make(chan budgetResult, 1)
	db.bmu.Lock()
	db.bqueue = append(db.bqueue, op)
	if db.brunning < batchRunners {
		db.brunning++
		go db.runBatches()
	}
	db.bmu.Unlock()
	return <-op.done
}

// runBatches sends queued operations until the queue is empty.
func (db *DB) runBatches() {
	for {
		db.bmu.Lock()
		n := min(len(db.bqueue), maxBatch)
		if n == 0 {
			db.brunning--
			db.bmu.Unlock()
			return
		}
		ops := make([]*budgetOp, 0, n)
		for _, op := range db.bqueue[:n] {
			if err := op.ctx.Err(); err != nil {
				op.done <- budgetResult{err: err} // gave up before it was sent: nothing happened
				continue
			}
			ops = append(ops, op)
		}
		rest := copy(db.bqueue, db.bqueue[n:])
		clear(db.bqueue[rest:])
		db.bqueue = db.bqueue[:rest]
		db.bmu.Unlock()
		if len(ops) > 0 {
			db.runBatch(ops)
		}
	}
}

const batchSQL = `SELECT o_n, o_status, o_scope, o_id, o_max, o_spend, o_reserved FROM toolgate_budget_batch(
	$1::text[], $2::text[], $3::numeric[], $4::timestamptz[], $5::int[], $6::int[], $7::text[], $8::text[], $9::timestamptz, $10::boolean)`

func (db *DB) runBatch(ops []*budgetOp) {
	var (
		kinds, ids, scopes, refIDs = make([]string, len(ops)), make([]string, len(ops)), []string{}, []string{}
		amounts                    = make([]float64, len(ops))
		expires                    = make([]*time.Time, len(ops))
		from, to                   = make([]int32, len(ops)), make([]int32, len(ops))
	)
	for i, op := range ops {
		kinds[i], ids[i], amounts[i] = "reserve", op.id, op.amount
		refs := op.refs
		if op.settle {
			kinds[i] = "settle"
			refs = lockOrder(refs)
		} else {
			exp := op.expires
			expires[i] = &exp
		}
		from[i] = int32(len(scopes) + 1)
		for _, r := range refs {
			scopes, refIDs = append(scopes, string(r.Scope)), append(refIDs, r.ID)
		}
		to[i] = int32(len(scopes))
	}
	results := make([]budgetResult, len(ops))
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	err := retry(func() error {
		rows, err := db.pool.Query(ctx, batchSQL, kinds, ids, amounts, expires, from, to, scopes, refIDs, db.now(), db.asyncBudget)
		if err != nil {
			return err
		}
		defer rows.Close()
		seen := 0
		for rows.Next() {
			var (
				n                   int32
				status              string
				scope, id           *string
				maxB, spend, reserv *float64
			)
			if err := rows.Scan(&n, &status, &scope, &id, &maxB, &spend, &reserv); err != nil {
				return err
			}
			if n < 1 || int(n) > len(ops) {
				return fmt.Errorf("budget batch answered for operation %d of %d", n, len(ops))
			}
			r := budgetResult{status: status}
			if status == "exceeded" && scope != nil && id != nil {
				r.exceeded = &store.BudgetExceededError{Scope: store.BudgetScope(*scope), ID: *id, MaxBudget: deref(maxB), Spend: deref(spend), Reserved: deref(reserv)}
			}
			results[n-1] = r
			seen++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if seen != len(ops) {
			return fmt.Errorf("budget batch answered %d of %d operations", seen, len(ops))
		}
		return nil
	})
	for i, op := range ops {
		if err != nil {
			results[i] = budgetResult{err: err}
		}
		op.done <- results[i]
	}
}

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}
