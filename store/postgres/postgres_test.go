package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
func newDB(tb testing.TB, params ...string) *postgres.DB {
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
	for i := 0; i+1 < len(params); i += 2 {
		cfg.ConnConfig.RuntimeParams[params[i]] = params[i+1]
	}
	db, err := postgres.NewWithConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
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

// BenchmarkInsertSpendLogs: ns/row is the spend log's cost per call on Postgres.
func BenchmarkInsertSpendLogs(b *testing.B) {
	storetest.BenchInsertSpendLogs(b, func(tb testing.TB) store.Store { return newDB(tb) })
}

func TestBudgetCommitParam(t *testing.T) {
	tests := []struct {
		url     string
		wantErr bool
	}{
		{"postgres://u@127.0.0.1/db", false},
		{"postgres://u@127.0.0.1/db?toolgate_budget_commit=sync", false},
		{"postgres://u@127.0.0.1/db?toolgate_budget_commit=async&application_name=tg", false},
		{"postgres://u@127.0.0.1/db?toolgate_budget_commit=off", true},
	}
	for _, tc := range tests {
		_, err := postgres.New(tc.url)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q): err %v, want error %v", tc.url, err, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "toolgate_budget_commit") {
			t.Errorf("New(%q): error %q does not name the parameter", tc.url, err)
		}
	}
}

// TestBudgetAsyncCommit runs the budget behaviour that matters most on the async-commit
// path: concurrent reservations against a budget that fits exactly some of them.
func TestBudgetAsyncCommit(t *testing.T) {
	db := newDB(t, postgres.BudgetCommitParam, "async")
	ctx := t.Context()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
	limit := 37.0
	if err := db.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: key, MaxBudget: &limit}); err != nil {
		t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		admitted atomic.Int64
	)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("r%d", i)
			err := db.Reserve(ctx, id, []store.BudgetRef{key, {Scope: store.BudgetTag, ID: "t"}}, 1, time.Now().Add(time.Minute))
			var be *store.BudgetExceededError
			switch {
			case err == nil:
				admitted.Add(1)
				if err := db.Settle(ctx, id, nil, 1); err != nil {
					t.Error(err)
				}
			case errors.As(err, &be):
				if be.Scope != store.BudgetKey || be.ID != "k" {
					t.Errorf("refused by %s %s, want the key", be.Scope, be.ID)
				}
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := db.Budget(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if admitted.Load() != 37 || b.Spend != 37 || b.Reserved != 0 {
		t.Errorf("admitted %d, spend %v, reserved %v; want 37, 37, 0", admitted.Load(), b.Spend, b.Reserved)
	}
	tag, err := db.Budget(ctx, store.BudgetRef{Scope: store.BudgetTag, ID: "t"})
	if err != nil || tag.Spend != 37 || tag.Reserved != 0 {
		t.Errorf("tag budget %+v %v: want spend 37 (created on first use, no limit)", tag, err)
	}
}
