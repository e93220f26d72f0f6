package sqlite_test

import (
	"path/filepath"
	"testing"

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

func newStoreTB(tb testing.TB) store.Store { return newStore(tb) }
