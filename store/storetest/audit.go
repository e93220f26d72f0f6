package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func testAudit(t *testing.T, newStore NewStore) {
	t.Run("AppendAssigns", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		before := time.Now().Add(-time.Second)
		e := &store.AuditEntry{Actor: "master_key", Action: "create", ObjectType: "key", ObjectID: "k1",
			After: json.RawMessage(`{"key_alias": "a", "models": ["gpt"]}`)}
		must(t, s.AppendAudit(ctx, e))
		if e.ID == 0 {
			t.Error("AppendAudit did not set ID")
		}
		if e.At.Before(before) || e.At.After(time.Now().Add(time.Second)) {
			t.Errorf("AppendAudit At: got %v, want about now", e.At)
		}
		e2 := &store.AuditEntry{At: t0, Actor: "u1", Action: "delete", ObjectType: "key", ObjectID: "k1",
			Before: json.RawMessage(`{"key_alias":"a"}`)}
		must(t, s.AppendAudit(ctx, e2))
		if e2.ID == e.ID {
			t.Errorf("two entries got the same ID %d", e.ID)
		}
		got, err := s.AuditLog(ctx, store.AuditFilter{})
		must(t, err)
		diff(t, "audit log", got, []*store.AuditEntry{e, e2}, equateJSON)
	})

	t.Run("Filter", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		entries := []*store.AuditEntry{
			{At: t0, Actor: "admin", Action: "create", ObjectType: "mcp_server", ObjectID: "s1"},
			{At: t0.Add(1 * time.Minute), Actor: "admin", Action: "update", ObjectType: "mcp_server", ObjectID: "s1"},
			{At: t0.Add(2 * time.Minute), Actor: "u1", Action: "create", ObjectType: "key", ObjectID: "k1"},
			{At: t0.Add(3 * time.Minute), Actor: "admin", Action: "create", ObjectType: "mcp_server", ObjectID: "s2"},
		}
		for _, e := range entries {
			must(t, s.AppendAudit(ctx, e))
		}
		tests := []struct {
			name string
			f    store.AuditFilter
			want []int // indexes into entries, newest first
		}{
			{"all", store.AuditFilter{}, []int{3, 2, 1, 0}},
			{"object type", store.AuditFilter{ObjectType: "mcp_server"}, []int{3, 1, 0}},
			{"object", store.AuditFilter{ObjectType: "mcp_server", ObjectID: "s1"}, []int{1, 0}},
			{"actor", store.AuditFilter{Actor: "u1"}, []int{2}},
			{"since is inclusive", store.AuditFilter{Since: t0.Add(time.Minute)}, []int{3, 2, 1}},
			{"limit", store.AuditFilter{Limit: 2}, []int{3, 2}},
			{"no match", store.AuditFilter{Actor: "nobody"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.AuditLog(ctx, tc.f)
				must(t, err)
				var want []*store.AuditEntry
				for _, i := range tc.want {
					want = append(want, entries[i])
				}
				diff(t, "entries", got, want, equateJSON)
			})
		}
	})

	t.Run("DefaultLimit", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		for i := range 105 {
			must(t, s.AppendAudit(ctx, &store.AuditEntry{At: t0.Add(time.Duration(i) * time.Second), Action: "x"}))
		}
		got, err := s.AuditLog(ctx, store.AuditFilter{})
		must(t, err)
		if len(got) != 100 {
			t.Errorf("entries with Limit 0: got %d, want 100", len(got))
		}
	})
}
