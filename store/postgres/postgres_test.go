package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
	"github.com/toolgate/toolgate/store/storetest"
)

// testURL returns TOOLGATE_TEST_DATABASE_URL, skipping the test when it is unset.
func testURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("TOOLGATE_TEST_DATABASE_URL")
	if url == "" {
		tb.Skip("TOOLGATE_TEST_DATABASE_URL not set")
	}
	return url
}

// adminExec runs one statement on a short-lived connection. An unreachable database fails
// the test: the variable says Postgres should be there.
func adminExec(tb testing.TB, url, sql string) {
	tb.Helper()
	ctx := context.WithoutCancel(tb.Context())
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect to TOOLGATE_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// newDB opens a store in a fresh schema of its own, dropped when the test ends, so tests
// running in parallel never see each other's rows.
func newDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	url := testURL(tb)
	var b [8]byte
	rand.Read(b[:])
	schema := "toolgate_test_" + hex.EncodeToString(b[:])
	adminExec(tb, url, "CREATE SCHEMA "+schema)
	tb.Cleanup(func() { adminExec(tb, url, "DROP SCHEMA "+schema+" CASCADE") })

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	db := postgres.NewWithConfig(cfg)
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	adminExec(t, testURL(t), "SELECT 1") // skip or fail once, not in every subtest
	storetest.Run(t, func(t testing.TB) store.Store { return newDB(t) })
}

func TestMigrateTwice(t *testing.T) {
	db := newDB(t)
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if err := db.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	newStore := func(tb testing.TB) store.Store { return newDB(tb) }
	b.Run("serial", func(b *testing.B) { storetest.BenchReserveSettle(b, newStore, false) })
	b.Run("parallel", func(b *testing.B) { storetest.BenchReserveSettle(b, newStore, true) })
}
