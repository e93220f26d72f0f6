// Package sqlite implements store.Store on an embedded SQLite database (modernc.org/sqlite,
// pure Go): WAL journal, a busy timeout, foreign keys on and immediate write transactions, so
// that concurrent writers queue instead of failing.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/toolgate/toolgate/store"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a store.Store backed by one SQLite file. Create it with New, then Open it.
type DB struct {
	path string
	db   *sql.DB

	// wsem serializes this process's write transactions. SQLite admits one writer at a time;
	// queueing here is much faster than its busy handler's sleep-and-retry. Other processes
	// sharing the file are still serialized by SQLite itself (busy timeout).
	wsem chan struct{}

	// bmu guards the queue of budget operations waiting for a group commit (batch.go).
	bmu      sync.Mutex
	bqueue   []*budgetOp
	brunning bool

	// smu guards stmts, the statements the budget batches keep prepared.
	smu   sync.Mutex
	stmts map[string]*sql.Stmt

	// Now returns the current time. If nil, time.Now is used. Tests replace it.
	Now func() time.Time
}

// New returns a DB for the SQLite file at path (":memory:" for a private in-memory
// database). It does no I/O.
func New(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty path")
	}
	return &DB{path: path, wsem: make(chan struct{}, 1)}, nil
}

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now().UTC()
	}
	return time.Now().UTC()
}

// Open opens the database file, creating it if needed, and applies pending migrations.
func (db *DB) Open(ctx context.Context) error {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Statement journals (kept for statements that may need to roll back alone, such as
	// multi-row inserts with ON CONFLICT) in memory rather than in temporary files.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Set("_txlock", "immediate")
	var dsn string
	if db.path == ":memory:" {
		// One shared connection, or every connection would see its own empty database.
		dsn = "file::memory:?" + q.Encode()
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		dsn = "file:" + db.path + "?" + q.Encode()
	}
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", db.path, err)
	}
	if db.path == ":memory:" {
		sdb.SetMaxOpenConns(1)
	} else {
		// Keep connections for concurrent readers: opening one (pragmas, schema) and
		// preparing its statements again costs more than most queries (database/sql keeps
		// two idle by default).
		sdb.SetMaxIdleConns(64)
		sdb.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return fmt.Errorf("open sqlite %s: %w", db.path, err)
	}
	db.db = sdb
	if err := db.Migrate(ctx); err != nil {
		sdb.Close()
		db.db = nil
		return err
	}
	return nil
}

// Migrate applies the embedded migrations that have not run yet, each in its own
// transaction, in file-name order. It is called by Open; calling it again is harmless.
func (db *DB) Migrate(ctx context.Context) error {
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY,
		applied_at TEXT NOT NULL)`); err != nil {
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
		if err := db.migrateOne(ctx, version, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

func (db *DB) migrateOne(ctx context.Context, version, body string) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		version, db.now().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	return tx.Commit()
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.db == nil {
		return errors.New("sqlite: not open")
	}
	return db.db.PingContext(ctx)
}

// Close closes the database.
func (db *DB) Close() error {
	if db.db == nil {
		return nil
	}
	db.smu.Lock()
	for _, st := range db.stmts {
		_ = st.Close()
	}
	db.stmts = nil
	db.smu.Unlock()
	return db.db.Close()
}

var _ store.Store = (*DB)(nil)
