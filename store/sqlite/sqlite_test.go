package sqlite_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
	"github.com/toolgate/toolgate/store/storetest"
)

// newStore opens a fresh database file in a temporary directory.
func newStore(tb testing.TB) store.Store {
	tb.Helper()
	db, err := sqlite.New(filepath.Join(tb.TempDir(), "toolgate.db"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store { return newStore(t) })
}

// TestTwoHandles has two DB handles on one file, as two gateway processes would: their write
// slots are separate, so SQLite's own locking (immediate transactions, busy timeout) must keep
// reservations exact.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	var dbs []*sqlite.DB
	for range 2 {
		db, err := sqlite.New(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	ctx := t.Context()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
	limit := 12.0
	if err := dbs[0].UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: key, MaxBudget: &limit}); err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			err := dbs[i%2].Reserve(ctx, fmt.Sprintf("r%d", i), []store.BudgetRef{key}, 1, time.Now().Add(time.Hour))
			var be *store.BudgetExceededError
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.As(err, &be):
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 12 {
		t.Errorf("admitted through two handles: got %d, want 12", ok.Load())
	}
	b, err := dbs[1].Budget(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if b.Reserved != 12 {
		t.Errorf("reserved: got %v, want 12", b.Reserved)
	}
}

func TestMemory(t *testing.T) {
	db, err := sqlite.New(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if err := db.SetSetting(t.Context(), "a", "b"); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Setting(t.Context(), "a"); err != nil || v != "b" {
		t.Fatalf("Setting: got %q, %v, want %q", v, err, "b")
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	b.Run("serial", func(b *testing.B) { storetest.BenchReserveSettle(b, newStoreTB, false) })
	b.Run("parallel", func(b *testing.B) { storetest.BenchReserveSettle(b, newStoreTB, true) })
}

// BenchmarkInsertSpendLogs: ns/row is the spend log's cost per call on SQLite.
func BenchmarkInsertSpendLogs(b *testing.B) { storetest.BenchInsertSpendLogs(b, newStoreTB) }

func newStoreTB(tb testing.TB) store.Store { return newStore(tb) }
