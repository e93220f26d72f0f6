package storetest

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/toolgate/toolgate/store"
)

func testSettings(t *testing.T, newStore NewStore) {
	t.Run("GetSet", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		_, err := s.Setting(ctx, "master_key_hash")
		wantErr(t, err, store.ErrNotFound)

		must(t, s.SetSetting(ctx, "master_key_hash", "v1"))
		must(t, s.SetSetting(ctx, "master_key_hash", "v2"))
		must(t, s.SetSetting(ctx, "empty", ""))
		for name, want := range map[string]string{"master_key_hash": "v2", "empty": ""} {
			got, err := s.Setting(ctx, name)
			must(t, err)
			if got != want {
				t.Errorf("Setting(%q): got %q, want %q", name, got, want)
			}
		}

		stored, err := s.SetSettingIfAbsent(ctx, "master_key_hash", "v3")
		must(t, err)
		if stored {
			t.Error("SetSettingIfAbsent over an existing name: got true, want false")
		}
		stored, err = s.SetSettingIfAbsent(ctx, "fresh", "f")
		must(t, err)
		if !stored {
			t.Error("SetSettingIfAbsent of a new name: got false, want true")
		}
		for name, want := range map[string]string{"master_key_hash": "v2", "fresh": "f"} {
			got, err := s.Setting(ctx, name)
			must(t, err)
			if got != want {
				t.Errorf("Setting(%q): got %q, want %q", name, got, want)
			}
		}
	})

	t.Run("IfAbsentConcurrent", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				ok, err := s.SetSettingIfAbsent(ctx, "once", string(rune('a'+i)))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Errorf("concurrent SetSettingIfAbsent winners: got %d, want 1", n)
		}
	})
}
