package storetest

import (
	"encoding/json"
	"testing"

	"github.com/toolgate/toolgate/store"
)

func testModels(t *testing.T, newStore NewStore) {
	t.Run("CRUD", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		m := &store.Model{ModelName: "gpt-4o", Params: json.RawMessage(`{"model": "openai/gpt-4o", "rpm": 10}`),
			Credentials: []byte("sealed"), ModelInfo: json.RawMessage(`{"input_cost_per_token": 0.000001}`), CreatedBy: "admin"}
		must(t, s.CreateModel(ctx, m))
		if m.ID == "" || m.CreatedAt.IsZero() {
			t.Fatalf("CreateModel did not assign ID and times: %+v", m)
		}
		got, err := s.Model(ctx, m.ID)
		must(t, err)
		diff(t, "Model", got, m, equateJSON)

		// Several deployments may share a name; order is name, then ID.
		b := &store.Model{ID: "b", ModelName: "claude"}
		a := &store.Model{ID: "a", ModelName: "gpt-4o"}
		z := &store.Model{ID: "zz", ModelName: "gpt-4o"}
		for _, x := range []*store.Model{b, z, a} {
			must(t, s.CreateModel(ctx, x))
		}
		list, err := s.Models(ctx)
		must(t, err)
		var ids []string
		for _, x := range list {
			ids = append(ids, x.ID)
		}
		want := []string{"b", "a", m.ID, "zz"}
		if m.ID < "a" {
			want = []string{"b", m.ID, "a", "zz"}
		} else if m.ID > "zz" {
			want = []string{"b", "a", "zz", m.ID}
		}
		diff(t, "Models order", ids, want)

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate id", s.CreateModel(ctx, &store.Model{ID: "a", ModelName: "x"}), store.ErrConflict},
			{"missing", errOf(s.Model(ctx, "nope")), store.ErrNotFound},
			{"update missing", s.UpdateModel(ctx, &store.Model{ID: "nope"}), store.ErrNotFound},
			{"delete missing", s.DeleteModel(ctx, "nope"), store.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}

		m.ModelName, m.Params, m.Credentials, m.ModelInfo = "gpt-4.1", json.RawMessage(`{"model":"openai/gpt-4.1"}`), nil, nil
		must(t, s.UpdateModel(ctx, m))
		got, err = s.Model(ctx, m.ID)
		must(t, err)
		diff(t, "updated model", got, m, equateJSON)

		must(t, s.DeleteModel(ctx, m.ID))
		wantErr(t, errOf(s.Model(ctx, m.ID)), store.ErrNotFound)
	})
}
