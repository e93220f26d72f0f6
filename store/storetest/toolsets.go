package storetest

import (
	"testing"

	"github.com/toolgate/toolgate/store"
)

func testToolsets(t *testing.T, newStore NewStore) {
	t.Run("CRUD", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		ts := &store.Toolset{Name: "readers", Description: "read-only tools", CreatedBy: "admin",
			Tools: []store.ToolRef{{ServerID: "s1", ToolName: "read"}, {ServerID: "s2", ToolName: "list"}}}
		must(t, s.CreateToolset(ctx, ts))
		if ts.ID == "" || ts.CreatedAt.IsZero() {
			t.Fatalf("CreateToolset did not assign ID and times: %+v", ts)
		}
		got, err := s.Toolset(ctx, ts.ID)
		must(t, err)
		diff(t, "Toolset", got, ts)
		got, err = s.ToolsetByName(ctx, "readers")
		must(t, err)
		diff(t, "ToolsetByName", got, ts)

		other := &store.Toolset{ID: "fixed", Name: "admins"}
		must(t, s.CreateToolset(ctx, other))
		list, err := s.Toolsets(ctx)
		must(t, err)
		diff(t, "Toolsets", list, []*store.Toolset{other, ts})

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate name", s.CreateToolset(ctx, &store.Toolset{Name: "readers"}), store.ErrConflict},
			{"duplicate id", s.CreateToolset(ctx, &store.Toolset{ID: "fixed", Name: "x"}), store.ErrConflict},
			{"missing", errOf(s.Toolset(ctx, "nope")), store.ErrNotFound},
			{"missing name", errOf(s.ToolsetByName(ctx, "nope")), store.ErrNotFound},
			{"update missing", s.UpdateToolset(ctx, &store.Toolset{ID: "nope", Name: "nope"}), store.ErrNotFound},
			{"update onto taken name", s.UpdateToolset(ctx, &store.Toolset{ID: "fixed", Name: "readers"}), store.ErrConflict},
			{"delete missing", s.DeleteToolset(ctx, "nope"), store.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}

		ts.Name, ts.Description, ts.Tools = "writers", "", []store.ToolRef{{ServerID: "s1", ToolName: "write"}}
		ts.CreatedBy = "ignored"
		must(t, s.UpdateToolset(ctx, ts))
		got, err = s.ToolsetByName(ctx, "writers")
		must(t, err)
		ts.CreatedBy = "admin"
		diff(t, "updated toolset", got, ts)

		must(t, s.DeleteToolset(ctx, ts.ID))
		wantErr(t, errOf(s.Toolset(ctx, ts.ID)), store.ErrNotFound)
		list, err = s.Toolsets(ctx)
		must(t, err)
		diff(t, "Toolsets after delete", list, []*store.Toolset{other})
	})
}
