package storetest

import (
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func sampleServer(name string) *store.MCPServer {
	return &store.MCPServer{
		Name:                      name,
		Alias:                     name + " alias",
		Description:               "a test server",
		URL:                       "https://" + name + ".example.com/mcp",
		Transport:                 store.TransportHTTP,
		AuthType:                  store.AuthBearer,
		Credentials:               []byte{0, 1, 2, 0xff},
		ExtraHeaders:              []string{"X-Trace"},
		StaticHeaders:             map[string]string{"X-Static": "1"},
		AllowedTools:              []string{"echo", "add"},
		ToolNameToDisplayName:     map[string]string{"echo": "Echo"},
		ToolNameToDescription:     map[string]string{"echo": "Echoes"},
		AccessGroups:              []string{"dev"},
		AllowAllKeys:              true,
		AvailableOnPublicInternet: true,
		AllowKeyless:              true,
		OAuth: store.MCPServerOAuth{
			ClientID: "cid", AuthorizationURL: "https://a/authorize", TokenURL: "https://a/token",
			RegistrationURL: "https://a/register", Scopes: []string{"read", "write"},
			GrantType: "authorization_code", Passthrough: true, DelegateAuthToUpstream: true,
		},
		Cost: store.MCPServerCost{
			DefaultCostPerQuery:    0.01,
			ToolNameToCostPerQuery: map[string]float64{"echo": 0.5},
		},
		Source:    "db",
		CreatedBy: "admin",
		UpdatedBy: "admin",
	}
}

func testServers(t *testing.T, newStore NewStore) {
	t.Run("CreateAndGet", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		srv := sampleServer("alpha")
		must(t, s.CreateMCPServer(ctx, srv))
		if srv.ID == "" || srv.CreatedAt.IsZero() || srv.UpdatedAt.IsZero() {
			t.Fatalf("CreateMCPServer did not assign ID and times: %+v", srv)
		}
		if srv.HealthStatus != store.HealthUnknown {
			t.Errorf("new server health: got %q, want %q", srv.HealthStatus, store.HealthUnknown)
		}
		got, err := s.MCPServer(ctx, srv.ID)
		must(t, err)
		diff(t, "MCPServer", got, srv)
		got, err = s.MCPServerByName(ctx, "alpha")
		must(t, err)
		diff(t, "MCPServerByName", got, srv)

		// An explicit ID is kept; empty collections stay empty.
		bare := &store.MCPServer{ID: "fixed-id", Name: "bare", URL: "http://x", Transport: store.TransportSSE}
		must(t, s.CreateMCPServer(ctx, bare))
		got, err = s.MCPServer(ctx, "fixed-id")
		must(t, err)
		diff(t, "bare server", got, bare)
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		a := sampleServer("alpha")
		must(t, s.CreateMCPServer(ctx, a))
		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate name", s.CreateMCPServer(ctx, sampleServer("alpha")), store.ErrConflict},
			{"duplicate id", s.CreateMCPServer(ctx, &store.MCPServer{ID: a.ID, Name: "other"}), store.ErrConflict},
			{"get missing", errOf(s.MCPServer(ctx, "nope")), store.ErrNotFound},
			{"get missing name", errOf(s.MCPServerByName(ctx, "nope")), store.ErrNotFound},
			{"update missing", s.UpdateMCPServer(ctx, &store.MCPServer{ID: "nope", Name: "nope"}), store.ErrNotFound},
			{"delete missing", s.DeleteMCPServer(ctx, "nope"), store.ErrNotFound},
			{"health missing", s.SetMCPServerHealth(ctx, "nope", store.HealthHealthy, "", t0), store.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}
	})

	t.Run("ListUpdateDelete", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		for _, n := range []string{"charlie", "alpha", "bravo"} {
			must(t, s.CreateMCPServer(ctx, sampleServer(n)))
		}
		list, err := s.MCPServers(ctx)
		must(t, err)
		diff(t, "names", names(list), []string{"alpha", "bravo", "charlie"})

		b, err := s.MCPServerByName(ctx, "bravo")
		must(t, err)
		must(t, s.SetMCPServerHealth(ctx, b.ID, store.HealthUnhealthy, "connection refused", t0))

		upd := sampleServer("bravo2")
		upd.ID = b.ID
		upd.CreatedBy = "someone else"
		upd.UpdatedBy = "editor"
		upd.AllowedTools = nil
		upd.Credentials = nil
		upd.HealthStatus = store.HealthHealthy // ignored: health is not replaced by updates
		must(t, s.UpdateMCPServer(ctx, upd))
		got, err := s.MCPServer(ctx, b.ID)
		must(t, err)
		want := *upd
		want.CreatedAt, want.CreatedBy = b.CreatedAt, b.CreatedBy
		want.HealthStatus, want.HealthError, want.LastHealthCheck = store.HealthUnhealthy, "connection refused", t0
		diff(t, "updated server", got, &want)
		if got.UpdatedAt.Before(b.UpdatedAt) {
			t.Errorf("UpdatedAt went back: got %v, want >= %v", got.UpdatedAt, b.UpdatedAt)
		}
		if _, err := s.MCPServerByName(ctx, "bravo"); err == nil {
			t.Error("old name still resolves after rename")
		}

		// Renaming onto a taken name conflicts.
		upd.Name = "alpha"
		wantErr(t, s.UpdateMCPServer(ctx, upd), store.ErrConflict)

		must(t, s.DeleteMCPServer(ctx, b.ID))
		wantErr(t, errOf(s.MCPServer(ctx, b.ID)), store.ErrNotFound)
		list, err = s.MCPServers(ctx)
		must(t, err)
		diff(t, "names after delete", names(list), []string{"alpha", "charlie"})
	})

	t.Run("Health", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		srv := sampleServer("alpha")
		must(t, s.CreateMCPServer(ctx, srv))
		must(t, s.SetMCPServerHealth(ctx, srv.ID, store.HealthUnhealthy, "boom", t0))
		must(t, s.SetMCPServerHealth(ctx, srv.ID, store.HealthHealthy, "", t0.Add(time.Minute)))
		got, err := s.MCPServer(ctx, srv.ID)
		must(t, err)
		diff(t, "health", []any{got.HealthStatus, got.HealthError, got.LastHealthCheck},
			[]any{store.HealthHealthy, "", t0.Add(time.Minute)})
	})
}

func names(list []*store.MCPServer) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

// errOf drops the value of a (value, error) pair.
func errOf[T any](_ T, err error) error { return err }
