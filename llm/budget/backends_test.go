package budget_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
	"github.com/toolgate/toolgate/store/sqlite"
)

// realStore is what the shared tests need of a store implementation.
type realStore interface {
	store.BudgetStore
	store.SpendStore
}

func storeBackend(name string, st realStore) backend {
	return backend{name: name, st: st, spend: st,
		setLimit: func(t testing.TB, ref store.BudgetRef, max float64) {
			if err := st.UpsertBudgetLimits(context.Background(), &store.Budget{BudgetRef: ref, MaxBudget: &max}); err != nil {
				t.Fatal(err)
			}
		},
		upsert: func(t testing.TB, b *store.Budget) {
			if err := st.UpsertBudgetLimits(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		},
		logs: func(t testing.TB) int {
			l, err := st.SpendLogs(context.Background(), store.SpendFilter{Limit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}}
}

func newSQLite(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newPostgres opens a store in a schema of its own, dropped at the end; nil when
// TOOLGATE_TEST_DATABASE_URL is unset.
func newPostgres(t testing.TB) *postgres.DB {
	t.Helper()
	url := os.Getenv("TOOLGATE_TEST_DATABASE_URL")
	if url == "" {
		return nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "toolgate_budget_" + hex.EncodeToString(b[:])
	exec := func(sql string) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect to TOOLGATE_TEST_DATABASE_URL: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE SCHEMA " + schema)
	t.Cleanup(func() { exec("DROP SCHEMA " + schema + " CASCADE") })
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	db, err := postgres.NewWithConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// backends lists the stores the shared tests run on: the in-memory fake, SQLite, and
// Postgres when TOOLGATE_TEST_DATABASE_URL is set.
func backends(t *testing.T) []backend {
	t.Helper()
	out := []backend{fakeBackend(), storeBackend("sqlite", newSQLite(t))}
	if pg := newPostgres(t); pg != nil {
		out = append(out, storeBackend("postgres", pg))
	} else {
		t.Log("TOOLGATE_TEST_DATABASE_URL not set: skipping Postgres")
	}
	return out
}
