package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/toolgate/toolgate/store"
)

// timeLayout is how times are stored: UTC, fixed width, so that text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// epsilon absorbs float rounding when a budget comparison should be exact (ten reservations
// of 0.003 fit a 0.03 budget).
const epsilon = 1e-9

// queryer is what *sql.DB and *sql.Tx have in common.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return fmtTime(t)
}

func ptrTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return fmtTime(*t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		// Accept any RFC 3339 form, should a row have been written by hand.
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

func parseNullTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}

func parsePtrTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// nullString stores "" as NULL, for columns that are unique only when set.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// jsonText encodes v for a JSON text column.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

// mustJSON is jsonText for values that always encode (slices and maps of plain types).
func mustJSON(v any) string {
	s, err := jsonText(v)
	if err != nil {
		panic(err)
	}
	return s
}

func unJSON(s string, v any) error {
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decode stored json: %w", err)
	}
	return nil
}

// rawJSON stores a json.RawMessage, nil as NULL.
func rawJSON(m json.RawMessage) any {
	if m == nil {
		return nil
	}
	return string(m)
}

func parseRawJSON(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

// blob stores nil as NULL.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// newID returns a random version 4 UUID.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// isUnique reports whether err is a uniqueness or primary-key violation.
func isUnique(err error) bool {
	var e *msqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// mapErr turns driver errors into the store's sentinels, wrapped with what was being done.
func mapErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case isUnique(err):
		return fmt.Errorf("%s: %w: %v", what, store.ErrConflict, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// notFoundIfNone returns ErrNotFound when an update or delete touched no row.
func notFoundIfNone(what string, res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// lockWrite waits for this process's write slot. The returned function gives it back.
func (db *DB) lockWrite(ctx context.Context) (func(), error) {
	select {
	case db.wsem <- struct{}{}:
		return func() { <-db.wsem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exec runs one writing statement outside a transaction, holding the write slot.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	unlock, err := db.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return db.db.ExecContext(ctx, query, args...)
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE, from the DSN), committing when fn
// returns nil. It holds the write slot throughout.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	unlock, err := db.lockWrite(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
