// Package postgres implements store.Store on PostgreSQL through a pgx/v5 connection pool.
// Several gateway processes may share one database: migrations take an advisory lock, and
// every invariant (unique names, budget reservations) is enforced by the database itself.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/toolgate/toolgate/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the pg_advisory_lock key that serializes migrations across replicas. It is
// combined with the schema (see lockKey), so that databases in different schemas, such as
// parallel tests, migrate independently.
const migrationLock = 0x746f6f6c67617465 // "toolgate"

// lockKey is the advisory lock key of the current schema's migrations.
const lockKey = `($1::bigint # hashtextextended(current_schema(), 0))`

// DB is a store.Store backed by PostgreSQL. Create it with New, then Open it.
type DB struct {
	cfg  *pgxpool.Config
	pool *pgxpool.Pool

	// Now returns the current time. If nil, time.Now is used. Tests replace it. Times the
	// store assigns are truncated to microseconds, the precision of timestamptz, so that what
	// a Create reports equals what a read returns.
	Now func() time.Time

	// asyncBudget commits budget batches without waiting for the WAL flush (the URL's
	// toolgate_budget_commit=async).
	asyncBudget bool

	bmu      sync.Mutex
	bqueue   []*budgetOp // budget operations waiting for a batch
	brunning int         // batch runners started and not yet finished
}

// BudgetCommitParam is the database URL query parameter that chooses how budget
// reservations and settlements commit: "sync" (the default) waits for the WAL flush like
// any transaction; "async" sets synchronous_commit = off for those transactions only, which
// makes admissions faster on slow disks at the cost that a database crash (not a gateway
// crash) may forget the last few hundred milliseconds of reservations and spend. Other
// writes are unaffected.
const BudgetCommitParam = "toolgate_budget_commit"

var _ store.Store = (*DB)(nil)

// New parses a postgres:// or postgresql:// URL. It does no I/O.
func New(url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	return NewWithConfig(cfg)
}

// NewWithConfig is New for a caller that built the pool config itself (tests set a
// search_path per test this way). A BudgetCommitParam among the runtime parameters is
// taken out and applied.
func NewWithConfig(cfg *pgxpool.Config) (*DB, error) {
	db := &DB{cfg: cfg}
	if v, ok := cfg.ConnConfig.RuntimeParams[BudgetCommitParam]; ok {
		delete(cfg.ConnConfig.RuntimeParams, BudgetCommitParam)
		switch v {
		case "sync", "":
		case "async":
			db.asyncBudget = true
		default:
			return nil, fmt.Errorf("postgres: %s=%q: want sync or async", BudgetCommitParam, v)
		}
	}
	return db, nil
}

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

// Open connects and applies pending migrations.
func (db *DB) Open(ctx context.Context) error {
	pool, err := pgxpool.NewWithConfig(ctx, db.cfg)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return fmt.Errorf("connect postgres: %w", err)
	}
	db.pool = pool
	if err := db.Migrate(ctx); err != nil {
		pool.Close()
		db.pool = nil
		return err
	}
	return nil
}

// Migrate applies the embedded migrations that have not run yet, each in its own
// transaction, under an advisory lock so concurrent replicas do not race.
func (db *DB) Migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockKey+`)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockKey+`)`, int64(migrationLock))

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if err := migrateOne(ctx, conn.Conn(), version, string(body), db.now()); err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

func migrateOne(ctx context.Context, conn *pgx.Conn, version, body string, now time.Time) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, body); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, now); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.pool == nil {
		return errors.New("postgres: not open")
	}
	return db.pool.Ping(ctx)
}

// Close closes the pool.
func (db *DB) Close() error {
	if db.pool != nil {
		db.pool.Close()
	}
	return nil
}
