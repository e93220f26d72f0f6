package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
	"github.com/toolgate/toolgate/store/storetest"
)

func TestOAuthStore(t *testing.T) {
	storetest.RunOAuth(t, func(t testing.TB) store.OAuthStore {
		db, err := sqlite.New(filepath.Join(t.TempDir(), "t.db"))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
