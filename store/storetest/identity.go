package storetest

import (
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func sampleKey(hash, alias string) *store.Key {
	exp := t0.Add(24 * time.Hour)
	return &store.Key{
		TokenHash: hash,
		KeyName:   "sk-...." + hash,
		KeyAlias:  alias,
		Models:    []string{"gpt-4o"},
		Expires:   &exp,
		Metadata:  map[string]any{"env": "test", "n": 1.0},
		Tags:      []string{"t1"},
		Permission: store.ObjectPermission{
			MCPServers:         []string{"alpha"},
			MCPToolPermissions: map[string][]string{"alpha": {"echo"}},
			BlockedTools:       []string{"alpha-rm"},
			MCPToolsets:        []string{"ts1"},
		},
		Limits: store.Limits{
			MaxBudget: ptr(10.0), SoftBudget: ptr(8.0), BudgetDuration: "30d",
			RPMLimit: ptr(int64(60)), TPMLimit: ptr(int64(1000)), MaxParallelRequests: ptr(int64(2)),
		},
		AllowClientSideCredentials: true,
		CreatedBy:                  "admin",
	}
}

// budgetExists reports whether the budget row exists.
func budgetExists(t testing.TB, s store.Store, scope store.BudgetScope, id string) bool {
	t.Helper()
	_, err := s.Budget(t.Context(), store.BudgetRef{Scope: scope, ID: id})
	if err != nil {
		wantErr(t, err, store.ErrNotFound)
		return false
	}
	return true
}

// charge adds spend to a budget through the reservation path.
func charge(t testing.TB, s store.Store, ref store.BudgetRef, amount float64) {
	t.Helper()
	must(t, s.Settle(t.Context(), "charge-"+string(ref.Scope)+ref.ID, []store.BudgetRef{ref}, amount))
}

func testIdentity(t *testing.T, newStore NewStore) {
	t.Run("Keys", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		k := sampleKey("h1", "alias1")
		must(t, s.CreateKey(ctx, k))
		if k.ID == "" || k.CreatedAt.IsZero() || !k.CreatedAt.Equal(k.UpdatedAt) {
			t.Fatalf("CreateKey did not assign ID and times: %+v", k)
		}
		for name, get := range map[string]func() (*store.Key, error){
			"Key":        func() (*store.Key, error) { return s.Key(ctx, k.ID) },
			"KeyByHash":  func() (*store.Key, error) { return s.KeyByHash(ctx, "h1", time.Now()) },
			"KeyByAlias": func() (*store.Key, error) { return s.KeyByAlias(ctx, "alias1") },
		} {
			got, err := get()
			must(t, err)
			diff(t, name, got, k)
		}

		// Keys without alias do not collide on it.
		k2 := &store.Key{TokenHash: "h2"}
		k3 := &store.Key{TokenHash: "h3"}
		must(t, s.CreateKey(ctx, k2))
		must(t, s.CreateKey(ctx, k3))

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate hash", s.CreateKey(ctx, &store.Key{TokenHash: "h1"}), store.ErrConflict},
			{"duplicate alias", s.CreateKey(ctx, &store.Key{TokenHash: "h9", KeyAlias: "alias1"}), store.ErrConflict},
			{"duplicate id", s.CreateKey(ctx, &store.Key{ID: k.ID, TokenHash: "h8"}), store.ErrConflict},
			{"missing id", errOf(s.Key(ctx, "nope")), store.ErrNotFound},
			{"missing hash", errOf(s.KeyByHash(ctx, "nope", time.Now())), store.ErrNotFound},
			{"missing alias", errOf(s.KeyByAlias(ctx, "nope")), store.ErrNotFound},
			{"empty alias", errOf(s.KeyByAlias(ctx, "")), store.ErrNotFound},
			{"update missing", s.UpdateKey(ctx, &store.Key{ID: "nope"}), store.ErrNotFound},
			{"update alias taken", s.UpdateKey(ctx, &store.Key{ID: k2.ID, KeyAlias: "alias1"}), store.ErrConflict},
			{"delete missing", s.DeleteKey(ctx, "nope"), store.ErrNotFound},
			{"regenerate missing", errOf(s.RegenerateKey(ctx, "nope", "x", "x", time.Now().Add(time.Hour))), store.ErrNotFound},
			{"regenerate onto a used hash", errOf(s.RegenerateKey(ctx, k2.ID, "h1", "x", time.Time{})), store.ErrConflict},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}
		// A failed write leaves the key as it was.
		got, err := s.Key(ctx, k2.ID)
		must(t, err)
		diff(t, "key after failed writes", got, k2)
	})

	t.Run("KeysFilter", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		specs := []store.Key{
			// IDs in creation order, so that equal CreatedAt (coarse clocks) keeps the order.
			{ID: "1", TokenHash: "a", UserID: "u1", TeamID: "t1", OrgID: "o1", CreatedBy: "u1", KeyAlias: "ka"},
			{ID: "2", TokenHash: "b", UserID: "u1", TeamID: "t2", OrgID: "o1", CreatedBy: "admin"},
			{ID: "3", TokenHash: "c", UserID: "u2", TeamID: "t1", OrgID: "o2", CreatedBy: "u2"},
			{ID: "4", TokenHash: "d", UserID: "u2", CreatedBy: "admin"},
		}
		for i := range specs {
			must(t, s.CreateKey(ctx, &specs[i]))
		}
		tests := []struct {
			name string
			f    store.KeyFilter
			want []string
		}{
			{"all", store.KeyFilter{}, []string{"a", "b", "c", "d"}},
			{"user", store.KeyFilter{UserID: "u1"}, []string{"a", "b"}},
			{"team", store.KeyFilter{TeamID: "t1"}, []string{"a", "c"}},
			{"org", store.KeyFilter{OrgID: "o2"}, []string{"c"}},
			{"created by", store.KeyFilter{CreatedBy: "admin"}, []string{"b", "d"}},
			{"alias", store.KeyFilter{KeyAlias: "ka"}, []string{"a"}},
			{"user and team", store.KeyFilter{UserID: "u2", TeamID: "t1"}, []string{"c"}},
			{"limit", store.KeyFilter{Limit: 2}, []string{"a", "b"}},
			{"offset", store.KeyFilter{Offset: 3}, []string{"d"}},
			{"limit and offset", store.KeyFilter{Limit: 2, Offset: 1}, []string{"b", "c"}},
			{"none", store.KeyFilter{UserID: "nobody"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Keys(ctx, tc.f)
				must(t, err)
				var hashes []string
				for _, k := range got {
					hashes = append(hashes, k.TokenHash)
				}
				diff(t, "keys", hashes, tc.want)
			})
		}
	})

	t.Run("UpdateKey", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		k := sampleKey("h1", "a1")
		must(t, s.CreateKey(ctx, k))
		charge(t, s, store.BudgetRef{Scope: store.BudgetKey, ID: k.ID}, 1.5)

		upd := &store.Key{
			ID: k.ID, TokenHash: "ignored", KeyName: "ignored", KeyAlias: "a2", UserID: "u9", TeamID: "t9", OrgID: "o9",
			Blocked: true, Metadata: map[string]any{"x": "y"}, Limits: store.Limits{MaxBudget: ptr(3.0)},
			CreatedBy: "ignored", Spend: 99,
		}
		must(t, s.UpdateKey(ctx, upd))
		got, err := s.Key(ctx, k.ID)
		must(t, err)
		want := *upd
		want.TokenHash, want.KeyName, want.CreatedBy, want.CreatedAt = k.TokenHash, k.KeyName, k.CreatedBy, k.CreatedAt
		want.Spend = 1.5
		diff(t, "updated key", got, &want)
		if _, err := s.KeyByAlias(ctx, "a1"); err == nil {
			t.Error("old alias still resolves after update")
		}

		// The budget row follows the limits and keeps its spend.
		b, err := s.Budget(ctx, store.BudgetRef{Scope: store.BudgetKey, ID: k.ID})
		must(t, err)
		diff(t, "budget after update", []any{b.MaxBudget, b.SoftBudget, b.Duration, b.ResetAt, b.Spend},
			[]any{ptr(3.0), (*float64)(nil), "", (*time.Time)(nil), 1.5})
	})

	t.Run("LimitsMirrorBudget", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		k := sampleKey("h1", "")
		start := time.Now().Add(-time.Second)
		must(t, s.CreateKey(ctx, k))
		ref := store.BudgetRef{Scope: store.BudgetKey, ID: k.ID}
		b, err := s.Budget(ctx, ref)
		must(t, err)
		diff(t, "key budget", []any{b.MaxBudget, b.SoftBudget, b.Duration, b.Spend, b.Reserved},
			[]any{ptr(10.0), ptr(8.0), "30d", 0.0, 0.0})
		if b.ResetAt == nil || b.ResetAt.Before(start.AddDate(0, 0, 30)) || b.ResetAt.After(time.Now().AddDate(0, 0, 30)) {
			t.Errorf("ResetAt for a 30d budget: got %v, want about 30 days from now", b.ResetAt)
		}

		// An update that keeps the duration keeps ResetAt.
		k.Limits.MaxBudget = ptr(20.0)
		must(t, s.UpdateKey(ctx, k))
		b2, err := s.Budget(ctx, ref)
		must(t, err)
		diff(t, "budget after raising max", []any{b2.MaxBudget, b2.ResetAt}, []any{ptr(20.0), b.ResetAt})

		// Every identity kind gets a row under its own scope.
		u := &store.User{ID: "u1", Limits: store.Limits{MaxBudget: ptr(1.0)}}
		tm := &store.Team{ID: "t1", Limits: store.Limits{MaxBudget: ptr(2.0)}}
		o := &store.Org{ID: "o1", Limits: store.Limits{MaxBudget: ptr(3.0)}}
		must(t, s.CreateUser(ctx, u))
		must(t, s.CreateTeam(ctx, tm))
		must(t, s.CreateOrg(ctx, o))
		must(t, s.AddTeamMember(ctx, &store.TeamMember{TeamID: "t1", UserID: "u1", Role: store.TeamRoleUser,
			Limits: store.Limits{MaxBudget: ptr(4.0)}}))
		for _, tc := range []struct {
			ref  store.BudgetRef
			want float64
		}{
			{store.BudgetRef{Scope: store.BudgetUser, ID: "u1"}, 1},
			{store.BudgetRef{Scope: store.BudgetTeam, ID: "t1"}, 2},
			{store.BudgetRef{Scope: store.BudgetOrg, ID: "o1"}, 3},
			{store.BudgetRef{Scope: store.BudgetTeamMember, ID: "t1/u1"}, 4},
		} {
			b, err := s.Budget(ctx, tc.ref)
			must(t, err)
			if b.MaxBudget == nil || *b.MaxBudget != tc.want {
				t.Errorf("%v MaxBudget: got %v, want %v", tc.ref, b.MaxBudget, tc.want)
			}
			charge(t, s, tc.ref, tc.want/10)
		}
		// Reads fill Spend from the budget rows.
		gu, err := s.User(ctx, "u1")
		must(t, err)
		gt, err := s.Team(ctx, "t1")
		must(t, err)
		gorg, err := s.Org(ctx, "o1")
		must(t, err)
		gm, err := s.TeamMembers(ctx, "t1")
		must(t, err)
		diff(t, "spend", []float64{gu.Spend, gt.Spend, gorg.Spend, gm[0].Spend}, []float64{0.1, 0.2, 0.3, 0.4})

		// Invalid durations are refused, and nothing is written.
		bad := &store.Key{TokenHash: "bad", Limits: store.Limits{BudgetDuration: "soon"}}
		if err := s.CreateKey(ctx, bad); err == nil {
			t.Error("CreateKey with budget_duration \"soon\": got nil error")
		}
		wantErr(t, errOf(s.KeyByHash(ctx, "bad", time.Now())), store.ErrNotFound)
	})

	t.Run("ModelBudgetsMirrorBudget", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		k := sampleKey("h1", "")
		k.Limits.ModelMaxBudget = map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 1, Duration: "1d"}, "openai/o3": {MaxBudget: 2}}
		must(t, s.CreateKey(ctx, k))
		other := sampleKey("h2", "")
		other.Limits.ModelMaxBudget = map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 9}}
		must(t, s.CreateKey(ctx, other))
		ref := func(key *store.Key, model string) store.BudgetRef {
			return store.BudgetRef{Scope: store.BudgetKeyModel, ID: store.ModelCapID(key.ID, model)}
		}
		b, err := s.Budget(ctx, ref(k, "gpt-4o"))
		must(t, err)
		if b.MaxBudget == nil || *b.MaxBudget != 1 || b.Duration != "1d" || b.ResetAt == nil {
			t.Errorf("gpt-4o cap: %+v, want 1 resetting daily", b)
		}
		b, err = s.Budget(ctx, ref(k, "openai/o3"))
		must(t, err)
		if b.MaxBudget == nil || *b.MaxBudget != 2 || b.Duration != "" || b.ResetAt != nil {
			t.Errorf("openai/o3 cap: %+v, want 2 never resetting", b)
		}
		got, err := s.Key(ctx, k.ID)
		must(t, err)
		diff(t, "stored caps", got.Limits.ModelMaxBudget, k.Limits.ModelMaxBudget)

		// An update keeps the spend of a cap it keeps and drops the caps it leaves out.
		charge(t, s, ref(k, "gpt-4o"), 0.25)
		k.Limits.ModelMaxBudget = map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 5, Duration: "1d"}}
		must(t, s.UpdateKey(ctx, k))
		b, err = s.Budget(ctx, ref(k, "gpt-4o"))
		must(t, err)
		if *b.MaxBudget != 5 || b.Spend != 0.25 {
			t.Errorf("gpt-4o cap after update: max %v spend %v, want 5 and the 0.25 spent", *b.MaxBudget, b.Spend)
		}
		if budgetExists(t, s, store.BudgetKeyModel, ref(k, "openai/o3").ID) {
			t.Error("UpdateKey left the cap it dropped")
		}

		// Deleting the key deletes its caps, not another key's.
		must(t, s.DeleteKey(ctx, k.ID))
		if budgetExists(t, s, store.BudgetKeyModel, ref(k, "gpt-4o").ID) {
			t.Error("DeleteKey left the key's cap")
		}
		if !budgetExists(t, s, store.BudgetKeyModel, ref(other, "gpt-4o").ID) {
			t.Error("DeleteKey removed another key's cap")
		}

		// So does deleting the user or team that owns it.
		for _, owner := range []struct {
			key    *store.Key
			delete func() error
		}{
			{&store.Key{TokenHash: "hu", UserID: "u9"}, func() error { return s.DeleteUser(ctx, "u9") }},
			{&store.Key{TokenHash: "ht", TeamID: "t9"}, func() error { return s.DeleteTeam(ctx, "t9") }},
		} {
			must(t, s.CreateUser(ctx, &store.User{ID: "u9"}))
			must(t, s.CreateTeam(ctx, &store.Team{ID: "t9"}))
			owner.key.Limits.ModelMaxBudget = map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 1}}
			must(t, s.CreateKey(ctx, owner.key))
			must(t, owner.delete())
			if budgetExists(t, s, store.BudgetKeyModel, ref(owner.key, "gpt-4o").ID) {
				t.Errorf("deleting the owner of key %s left its cap", owner.key.TokenHash)
			}
			_ = s.DeleteUser(ctx, "u9")
			_ = s.DeleteTeam(ctx, "t9")
		}
		if !budgetExists(t, s, store.BudgetKeyModel, ref(other, "gpt-4o").ID) {
			t.Error("deleting an owner removed another key's cap")
		}

		// Teams mirror theirs the same way, and team "a" never touches team "a/b"'s.
		teamCap := func(team, model string) store.BudgetRef {
			return store.BudgetRef{Scope: store.BudgetTeamModel, ID: store.ModelCapID(team, model)}
		}
		ta := &store.Team{ID: "a", Limits: store.Limits{ModelMaxBudget: map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 1}}}}
		tab := &store.Team{ID: "a/b", Limits: store.Limits{ModelMaxBudget: map[string]store.ModelBudget{"gpt-4o": {MaxBudget: 2}, "o3": {MaxBudget: 3}}}}
		must(t, s.CreateTeam(ctx, ta))
		must(t, s.CreateTeam(ctx, tab))
		b, err = s.Budget(ctx, teamCap("a/b", "o3"))
		must(t, err)
		if *b.MaxBudget != 3 {
			t.Errorf("team a/b's o3 cap: %v, want 3", *b.MaxBudget)
		}
		ta.Limits.ModelMaxBudget = nil
		must(t, s.UpdateTeam(ctx, ta))
		if budgetExists(t, s, store.BudgetTeamModel, teamCap("a", "gpt-4o").ID) {
			t.Error("UpdateTeam left the cap it dropped")
		}
		if !budgetExists(t, s, store.BudgetTeamModel, teamCap("a/b", "gpt-4o").ID) {
			t.Error("dropping team a's caps removed team a/b's")
		}
		must(t, s.DeleteTeam(ctx, "a/b"))
		if budgetExists(t, s, store.BudgetTeamModel, teamCap("a/b", "o3").ID) {
			t.Error("DeleteTeam left the team's cap")
		}
	})

	t.Run("RegenerateGrace", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		k := sampleKey("old", "a")
		must(t, s.CreateKey(ctx, k))
		now := time.Now()
		graceUntil := now.Add(time.Hour)
		got, err := s.RegenerateKey(ctx, k.ID, "new", "sk-...new", graceUntil)
		must(t, err)
		if got.TokenHash != "new" || got.KeyName != "sk-...new" || got.ID != k.ID {
			t.Fatalf("RegenerateKey returned %+v, want hash new, name sk-...new, same ID", got)
		}
		tests := []struct {
			name string
			hash string
			at   time.Time
			ok   bool
		}{
			{"new hash now", "new", now, true},
			{"new hash later", "new", now.Add(48 * time.Hour), true},
			{"old hash inside grace", "old", now.Add(59 * time.Minute), true},
			{"old hash at grace end", "old", graceUntil, false},
			{"old hash after grace", "old", now.Add(2 * time.Hour), false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.KeyByHash(ctx, tc.hash, tc.at)
				if !tc.ok {
					wantErr(t, err, store.ErrNotFound)
					return
				}
				must(t, err)
				if got.ID != k.ID || got.TokenHash != "new" {
					t.Errorf("KeyByHash(%s): got key %s with hash %s, want %s with hash new", tc.hash, got.ID, got.TokenHash, k.ID)
				}
			})
		}

		// Regenerating without grace cuts the previous hash off at once.
		_, err = s.RegenerateKey(ctx, k.ID, "newer", "sk-...newer", time.Time{})
		must(t, err)
		wantErr(t, errOf(s.KeyByHash(ctx, "new", time.Now())), store.ErrNotFound)
		_, err = s.KeyByHash(ctx, "old", now.Add(time.Minute)) // its own grace still runs
		must(t, err)

		// Deleting the key ends every grace.
		must(t, s.DeleteKey(ctx, k.ID))
		wantErr(t, errOf(s.KeyByHash(ctx, "old", now.Add(time.Minute))), store.ErrNotFound)
		wantErr(t, errOf(s.KeyByHash(ctx, "newer", now)), store.ErrNotFound)
		if budgetExists(t, s, store.BudgetKey, k.ID) {
			t.Error("DeleteKey left the key's budget row")
		}
		// The old hash can be used by a new key.
		must(t, s.CreateKey(ctx, &store.Key{TokenHash: "old"}))
	})

	t.Run("Users", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		u := &store.User{ID: "u2", Email: "u2@example.com", OrgID: "o1", Models: []string{"m"},
			Metadata: map[string]any{"a": "b"}, Permission: store.ObjectPermission{Models: []string{"m"}},
			Limits: store.Limits{MaxBudget: ptr(5.0)}}
		must(t, s.CreateUser(ctx, u))
		if u.Role != store.RoleInternalUser {
			t.Errorf("default role: got %q, want %q", u.Role, store.RoleInternalUser)
		}
		got, err := s.User(ctx, "u2")
		must(t, err)
		diff(t, "user", got, u)

		gen := &store.User{Role: store.RoleProxyAdmin}
		must(t, s.CreateUser(ctx, gen))
		if gen.ID == "" {
			t.Error("CreateUser did not assign an ID")
		}
		must(t, s.CreateUser(ctx, &store.User{ID: "u1"})) // no email: no clash with gen
		must(t, s.CreateUser(ctx, &store.User{ID: "u3"}))

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate id", s.CreateUser(ctx, &store.User{ID: "u2"}), store.ErrConflict},
			{"duplicate email", s.CreateUser(ctx, &store.User{ID: "u9", Email: "u2@example.com"}), store.ErrConflict},
			{"missing", errOf(s.User(ctx, "nope")), store.ErrNotFound},
			{"update missing", s.UpdateUser(ctx, &store.User{ID: "nope"}), store.ErrNotFound},
			{"update email taken", s.UpdateUser(ctx, &store.User{ID: "u1", Email: "u2@example.com"}), store.ErrConflict},
			{"delete missing", s.DeleteUser(ctx, "nope"), store.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}

		all, err := s.Users(ctx, 0, 0)
		must(t, err)
		if len(all) != 4 {
			t.Fatalf("Users: got %d, want 4", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i-1].ID >= all[i].ID {
				t.Errorf("Users not ordered by ID: %s before %s", all[i-1].ID, all[i].ID)
			}
		}
		page, err := s.Users(ctx, 2, 1)
		must(t, err)
		diff(t, "page", []string{page[0].ID, page[1].ID}, []string{all[1].ID, all[2].ID})

		u.Email, u.Role, u.Limits = "new@example.com", store.RoleProxyAdminViewer, store.Limits{}
		must(t, s.UpdateUser(ctx, u))
		got, err = s.User(ctx, "u2")
		must(t, err)
		diff(t, "updated user", got, u)
	})

	t.Run("TeamsAndMembers", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		for _, id := range []string{"u1", "u2", "u3"} {
			must(t, s.CreateUser(ctx, &store.User{ID: id}))
		}
		tb := &store.Team{ID: "tb", Alias: "B", OrgID: "o1", Models: []string{"m"}, Blocked: true,
			Metadata: map[string]any{"k": "v"}, Permission: store.ObjectPermission{MCPServers: []string{"s"}}}
		must(t, s.CreateTeam(ctx, tb))
		must(t, s.CreateTeam(ctx, &store.Team{ID: "ta", OrgID: "o2"}))
		must(t, s.CreateTeam(ctx, &store.Team{ID: "tc", OrgID: "o1"}))
		gen := &store.Team{}
		must(t, s.CreateTeam(ctx, gen))
		if gen.ID == "" {
			t.Error("CreateTeam did not assign an ID")
		}
		got, err := s.Team(ctx, "tb")
		must(t, err)
		diff(t, "team", got, tb)

		teams, err := s.Teams(ctx, "o1")
		must(t, err)
		diff(t, "teams of o1", teamIDs(teams), []string{"tb", "tc"})
		teams, err = s.Teams(ctx, "")
		must(t, err)
		if len(teams) != 4 || teams[0].ID > teams[1].ID {
			t.Errorf("Teams(\"\"): got %v, want 4 teams ordered by ID", teamIDs(teams))
		}

		tb.Alias, tb.Blocked = "B2", false
		must(t, s.UpdateTeam(ctx, tb))
		got, err = s.Team(ctx, "tb")
		must(t, err)
		diff(t, "updated team", got, tb)

		m := &store.TeamMember{TeamID: "tb", UserID: "u2", Role: store.TeamRoleAdmin, Limits: store.Limits{MaxBudget: ptr(1.0)}}
		must(t, s.AddTeamMember(ctx, m))
		must(t, s.AddTeamMember(ctx, &store.TeamMember{TeamID: "tb", UserID: "u1", Role: store.TeamRoleUser}))
		must(t, s.AddTeamMember(ctx, &store.TeamMember{TeamID: "ta", UserID: "u2", Role: store.TeamRoleUser}))

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate team", s.CreateTeam(ctx, &store.Team{ID: "tb"}), store.ErrConflict},
			{"missing team", errOf(s.Team(ctx, "nope")), store.ErrNotFound},
			{"update missing team", s.UpdateTeam(ctx, &store.Team{ID: "nope"}), store.ErrNotFound},
			{"delete missing team", s.DeleteTeam(ctx, "nope"), store.ErrNotFound},
			{"member of unknown team", s.AddTeamMember(ctx, &store.TeamMember{TeamID: "nope", UserID: "u1"}), store.ErrNotFound},
			{"unknown user", s.AddTeamMember(ctx, &store.TeamMember{TeamID: "tb", UserID: "nope"}), store.ErrNotFound},
			{"already a member", s.AddTeamMember(ctx, &store.TeamMember{TeamID: "tb", UserID: "u2"}), store.ErrConflict},
			{"update non-member", s.UpdateTeamMember(ctx, &store.TeamMember{TeamID: "tb", UserID: "u3"}), store.ErrNotFound},
			{"remove non-member", s.RemoveTeamMember(ctx, "tb", "u3"), store.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}

		members, err := s.TeamMembers(ctx, "tb")
		must(t, err)
		diff(t, "members", members, []*store.TeamMember{
			{TeamID: "tb", UserID: "u1", Role: store.TeamRoleUser},
			{TeamID: "tb", UserID: "u2", Role: store.TeamRoleAdmin, Limits: store.Limits{MaxBudget: ptr(1.0)}},
		})
		ms, err := s.Memberships(ctx, "u2")
		must(t, err)
		diff(t, "memberships", []string{ms[0].TeamID, ms[1].TeamID}, []string{"ta", "tb"})

		m.Role, m.Limits = store.TeamRoleUser, store.Limits{MaxBudget: ptr(2.0)}
		must(t, s.UpdateTeamMember(ctx, m))
		b, err := s.Budget(ctx, store.BudgetRef{Scope: store.BudgetTeamMember, ID: "tb/u2"})
		must(t, err)
		diff(t, "member budget", b.MaxBudget, ptr(2.0))
		ms, err = s.Memberships(ctx, "u2")
		must(t, err)
		diff(t, "updated membership", ms[1], m)

		must(t, s.RemoveTeamMember(ctx, "tb", "u2"))
		if budgetExists(t, s, store.BudgetTeamMember, "tb/u2") {
			t.Error("RemoveTeamMember left the member's budget row")
		}
		members, err = s.TeamMembers(ctx, "tb")
		must(t, err)
		if len(members) != 1 || members[0].UserID != "u1" {
			t.Errorf("members after remove: got %v, want only u1", members)
		}
	})

	t.Run("DeleteUserCascades", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		ids := seedIdentities(t, s)
		must(t, s.DeleteUser(ctx, "u1"))
		wantErr(t, errOf(s.User(ctx, "u1")), store.ErrNotFound)
		for _, hash := range []string{"k-u1", "k-u1-t1"} {
			wantErr(t, errOf(s.KeyByHash(ctx, hash, time.Now())), store.ErrNotFound)
		}
		ms, err := s.TeamMembers(ctx, "t1")
		must(t, err)
		diff(t, "t1 members", memberUsers(ms), []string{"u2"})
		for _, ref := range []store.BudgetRef{
			{Scope: store.BudgetUser, ID: "u1"}, {Scope: store.BudgetTeamMember, ID: "t1/u1"},
			{Scope: store.BudgetKey, ID: ids["k-u1"]}, {Scope: store.BudgetKey, ID: ids["k-u1-t1"]},
		} {
			if budgetExists(t, s, ref.Scope, ref.ID) {
				t.Errorf("DeleteUser left budget %v", ref)
			}
		}
		// Others are untouched.
		for _, hash := range []string{"k-u2", "k-t1"} {
			_, err := s.KeyByHash(ctx, hash, time.Now())
			must(t, err)
		}
		if !budgetExists(t, s, store.BudgetTeamMember, "t1/u2") || !budgetExists(t, s, store.BudgetUser, "u2") {
			t.Error("DeleteUser removed another user's budget rows")
		}
		must(t, s.CreateUser(ctx, &store.User{ID: "u1"})) // the ID is free again
	})

	t.Run("DeleteTeamCascades", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		ids := seedIdentities(t, s)
		must(t, s.DeleteTeam(ctx, "t1"))
		wantErr(t, errOf(s.Team(ctx, "t1")), store.ErrNotFound)
		for _, hash := range []string{"k-t1", "k-u1-t1"} {
			wantErr(t, errOf(s.KeyByHash(ctx, hash, time.Now())), store.ErrNotFound)
		}
		for _, ref := range []store.BudgetRef{
			{Scope: store.BudgetTeam, ID: "t1"}, {Scope: store.BudgetTeamMember, ID: "t1/u1"},
			{Scope: store.BudgetTeamMember, ID: "t1/u2"},
			{Scope: store.BudgetKey, ID: ids["k-t1"]}, {Scope: store.BudgetKey, ID: ids["k-u1-t1"]},
		} {
			if budgetExists(t, s, ref.Scope, ref.ID) {
				t.Errorf("DeleteTeam left budget %v", ref)
			}
		}
		ms, err := s.Memberships(ctx, "u1")
		must(t, err)
		if len(ms) != 0 {
			t.Errorf("memberships of u1 after DeleteTeam: got %v, want none", ms)
		}
		for _, hash := range []string{"k-u1", "k-u2"} {
			_, err := s.KeyByHash(ctx, hash, time.Now())
			must(t, err)
		}
		if !budgetExists(t, s, store.BudgetKey, ids["k-u1"]) || !budgetExists(t, s, store.BudgetUser, "u1") {
			t.Error("DeleteTeam removed budget rows outside the team")
		}
	})

	t.Run("Orgs", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		o := &store.Org{ID: "o2", Alias: "Org", Models: []string{"m"}, Metadata: map[string]any{"a": 1.0},
			Permission: store.ObjectPermission{MCPAccessGroups: []string{"g"}}, Limits: store.Limits{MaxBudget: ptr(9.0)}}
		must(t, s.CreateOrg(ctx, o))
		got, err := s.Org(ctx, "o2")
		must(t, err)
		diff(t, "org", got, o)
		gen := &store.Org{}
		must(t, s.CreateOrg(ctx, gen))
		if gen.ID == "" {
			t.Error("CreateOrg did not assign an ID")
		}
		must(t, s.CreateOrg(ctx, &store.Org{ID: "o1"}))
		must(t, s.CreateTeam(ctx, &store.Team{ID: "t1", OrgID: "o1"}))

		tests := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate", s.CreateOrg(ctx, &store.Org{ID: "o2"}), store.ErrConflict},
			{"missing", errOf(s.Org(ctx, "nope")), store.ErrNotFound},
			{"update missing", s.UpdateOrg(ctx, &store.Org{ID: "nope"}), store.ErrNotFound},
			{"delete missing", s.DeleteOrg(ctx, "nope"), store.ErrNotFound},
			{"delete with teams", s.DeleteOrg(ctx, "o1"), store.ErrConflict},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.want) })
		}
		_, err = s.Org(ctx, "o1")
		must(t, err) // the refused delete changed nothing

		orgs, err := s.Orgs(ctx)
		must(t, err)
		if len(orgs) != 3 || orgs[0].ID > orgs[1].ID || orgs[1].ID > orgs[2].ID {
			t.Errorf("Orgs: got %d orgs, want 3 ordered by ID", len(orgs))
		}

		o.Alias, o.Limits = "Renamed", store.Limits{}
		must(t, s.UpdateOrg(ctx, o))
		got, err = s.Org(ctx, "o2")
		must(t, err)
		diff(t, "updated org", got, o)

		must(t, s.DeleteTeam(ctx, "t1"))
		must(t, s.DeleteOrg(ctx, "o1"))
		must(t, s.DeleteOrg(ctx, "o2"))
		if budgetExists(t, s, store.BudgetOrg, "o2") {
			t.Error("DeleteOrg left the org's budget row")
		}
	})
}

// seedIdentities creates users u1, u2, team t1 with both as members, and keys k-u1 (u1),
// k-u2 (u2), k-t1 (t1) and k-u1-t1 (u1 in t1). It returns key IDs by hash.
func seedIdentities(t testing.TB, s store.Store) map[string]string {
	t.Helper()
	ctx := t.Context()
	must(t, s.CreateUser(ctx, &store.User{ID: "u1"}))
	must(t, s.CreateUser(ctx, &store.User{ID: "u2"}))
	must(t, s.CreateTeam(ctx, &store.Team{ID: "t1"}))
	must(t, s.AddTeamMember(ctx, &store.TeamMember{TeamID: "t1", UserID: "u1", Role: store.TeamRoleUser}))
	must(t, s.AddTeamMember(ctx, &store.TeamMember{TeamID: "t1", UserID: "u2", Role: store.TeamRoleAdmin}))
	ids := map[string]string{}
	for _, k := range []*store.Key{
		{TokenHash: "k-u1", UserID: "u1"},
		{TokenHash: "k-u2", UserID: "u2"},
		{TokenHash: "k-t1", TeamID: "t1"},
		{TokenHash: "k-u1-t1", UserID: "u1", TeamID: "t1"},
	} {
		must(t, s.CreateKey(ctx, k))
		ids[k.TokenHash] = k.ID
	}
	return ids
}

func teamIDs(ts []*store.Team) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func memberUsers(ms []*store.TeamMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.UserID)
	}
	return out
}
