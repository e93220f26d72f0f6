package llm_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
	"github.com/toolgate/toolgate/store/sqlite"
)

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
func newPostgres(t testing.TB, params ...string) *postgres.DB {
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
	for i := 0; i+1 < len(params); i += 2 {
		cfg.ConnConfig.RuntimeParams[params[i]] = params[i+1]
	}
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

// realStore is the part of store.Store the llm tests use.
type realStore interface {
	store.BudgetStore
	store.SpendStore
	store.ModelStore
}

// storeOpts runs the harness on a real store.
func storeOpts(st realStore, o harnessOpts) harnessOpts {
	o.budgets, o.spendStore, o.reader = st, st, st
	o.setLimit = func(h *harness, max float64) {
		if err := st.UpsertBudgetLimits(context.Background(), &store.Budget{BudgetRef: store.BudgetRef{Scope: store.BudgetKey, ID: "key1"}, MaxBudget: &max}); err != nil {
			h.t.Fatal(err)
		}
	}
	o.count = func(h *harness) int {
		l, err := st.SpendLogs(context.Background(), store.SpendFilter{KeyID: "key1", Limit: 1 << 20})
		if err != nil {
			h.t.Fatal(err)
		}
		return len(l)
	}
	return o
}

func TestBudgetRaceHTTPStores(t *testing.T) {
	stores := map[string]realStore{"sqlite": newSQLite(t)}
	if pg := newPostgres(t); pg != nil {
		stores["postgres"] = pg
	} else {
		t.Log("TOOLGATE_TEST_DATABASE_URL not set: skipping Postgres")
	}
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			up := newFakeOpenAI(t)
			m := model("gpt", up.URL, map[string]any{"input_cost_per_token": 0})
			h := newHarness(t, storeOpts(st, harnessOpts{models: []llm.ModelConfig{m}}))
			testBudgetRace(t, h, up)
		})
	}
}
