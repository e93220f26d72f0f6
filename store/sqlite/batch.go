package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Budget reservations and settlements are group-committed. SQLite admits one writer at a
// time and every commit appends to the WAL, so one transaction per admission would make
// every LLM request queue for a commit of its own. Instead Reserve and Settle queue an
// operation; a runner takes everything queued, applies each operation in order inside one
// write transaction (each in a savepoint of its own, so one that fails leaves the others
// alone), commits once and hands each caller its result. A lone request waits for nothing;
// under load the batches grow and the commits are shared. Each operation still runs alone
// against the rows it reads, so a reservation remains atomic: no two can both pass when
// only one fits. Other processes sharing the file are serialized by SQLite as before.

// maxBatch caps the operations in one transaction.
const maxBatch = 256

// batchTimeout bounds one batch. Callers wait for their result even when their own context
// ends, so that a reservation made is never reported as not made.
const batchTimeout = time.Minute

type budgetOp struct {
	ctx   context.Context
	apply func(ctx context.Context, tx queryer, now time.Time) error
	done  chan error
}

// budgetDo queues apply and waits until the batch holding it has committed.
func (db *DB) budgetDo(ctx context.Context, apply func(ctx context.Context, tx queryer, now time.Time) error) error {
	op := &budgetOp{ctx: ctx, apply: apply, done: make(chan error, 1)}
	db.bmu.Lock()
	db.bqueue = append(db.bqueue, op)
	if !db.brunning {
		db.brunning = true
		go db.runBatches()
	}
	db.bmu.Unlock()
	return <-op.done
}

// runBatches applies queued operations until the queue is empty.
func (db *DB) runBatches() {
	for {
		db.bmu.Lock()
		n := min(len(db.bqueue), maxBatch)
		if n == 0 {
			db.brunning = false
			db.bmu.Unlock()
			return
		}
		ops := make([]*budgetOp, 0, n)
		for _, op := range db.bqueue[:n] {
			if err := op.ctx.Err(); err != nil {
				op.done <- err // gave up before it was applied: nothing happened
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

func (db *DB) runBatch(ops []*budgetOp) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	results := make([]error, len(ops))
	now := db.now()
	err := db.inTx(ctx, func(sqlTx *sql.Tx) error {
		tx := &preparedTx{db: db, tx: sqlTx}
		defer tx.close()
		if len(ops) == 1 {
			// Alone in the transaction: a failure rolls the whole of it back.
			results[0] = ops[0].apply(ctx, tx, now)
			return results[0]
		}
		for i, op := range ops {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT budget_op`); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			if results[i] = op.apply(ctx, tx, now); results[i] != nil {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO budget_op`); err != nil {
					return fmt.Errorf("rollback to savepoint: %w", err)
				}
			}
			if _, err := tx.ExecContext(ctx, `RELEASE budget_op`); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
		}
		return nil
	})
	for i, op := range ops {
		if err != nil && (len(ops) > 1 || results[i] == nil) {
			// The transaction did not commit: nothing of it happened.
			results[i] = err
		}
		op.done <- results[i]
	}
}

// preparedTx runs statements in tx through prepared statements that DB keeps for the
// life of the database: parsing SQL costs more than running these statements.
type preparedTx struct {
	db    *DB
	tx    *sql.Tx
	stmts []*sql.Stmt // tx-bound copies, closed by close
}

// prepared returns query prepared, preparing it on first use. Callers must not close it.
func (db *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	db.smu.Lock()
	st := db.stmts[query]
	db.smu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := db.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.smu.Lock()
	defer db.smu.Unlock()
	if old := db.stmts[query]; old != nil {
		_ = st.Close()
		return old, nil
	}
	if db.stmts == nil {
		db.stmts = map[string]*sql.Stmt{}
	}
	db.stmts[query] = st
	return st, nil
}

func (p *preparedTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, err := p.db.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	ts := p.tx.StmtContext(ctx, st)
	p.stmts = append(p.stmts, ts)
	return ts, nil
}

func (p *preparedTx) close() {
	for _, st := range p.stmts {
		_ = st.Close()
	}
}

func (p *preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p *preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.tx.QueryRowContext(ctx, query, args...) // reports the same error on Scan
	}
	return st.QueryRowContext(ctx, args...)
}
