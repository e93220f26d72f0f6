package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

var (
	refKey  = store.BudgetRef{Scope: store.BudgetKey, ID: "k1"}
	refUser = store.BudgetRef{Scope: store.BudgetUser, ID: "u1"}
	refTeam = store.BudgetRef{Scope: store.BudgetTeam, ID: "t1"}
	refTag  = store.BudgetRef{Scope: store.BudgetTag, ID: "prod"}
)

// spendOf returns (spend, reserved) of a budget.
func spendOf(t testing.TB, s store.Store, ref store.BudgetRef) [2]float64 {
	t.Helper()
	b, err := s.Budget(t.Context(), ref)
	must(t, err)
	return [2]float64{b.Spend, b.Reserved}
}

func setMax(t testing.TB, s store.Store, ref store.BudgetRef, max float64) {
	t.Helper()
	must(t, s.UpsertBudgetLimits(t.Context(), &store.Budget{BudgetRef: ref, MaxBudget: &max}))
}

func testBudget(t *testing.T, newStore NewStore) {
	t.Run("Limits", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		wantErr(t, errOf(s.Budget(ctx, refKey)), store.ErrNotFound)
		wantErr(t, s.DeleteBudget(ctx, refKey), store.ErrNotFound)

		reset := t0.Add(30 * 24 * time.Hour)
		b := &store.Budget{BudgetRef: refKey, MaxBudget: ptr(10.0), SoftBudget: ptr(8.0), Duration: "30d", ResetAt: &reset}
		must(t, s.UpsertBudgetLimits(ctx, b))
		got, err := s.Budget(ctx, refKey)
		must(t, err)
		if got.UpdatedAt.IsZero() {
			t.Error("UpdatedAt not set")
		}
		got.UpdatedAt = time.Time{}
		diff(t, "budget", got, b)

		// Limits change; Spend and Reserved stay.
		must(t, s.Reserve(ctx, "r1", []store.BudgetRef{refKey}, 2, time.Now().Add(time.Hour)))
		must(t, s.Settle(ctx, "r1", nil, 1.5))
		must(t, s.Reserve(ctx, "r2", []store.BudgetRef{refKey}, 1, time.Now().Add(time.Hour)))
		must(t, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: refKey}))
		got, err = s.Budget(ctx, refKey)
		must(t, err)
		diff(t, "budget after clearing limits",
			[]any{got.MaxBudget, got.SoftBudget, got.Duration, got.ResetAt, got.Spend, got.Reserved},
			[]any{(*float64)(nil), (*float64)(nil), "", (*time.Time)(nil), 1.5, 1.0})

		must(t, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: refTeam, MaxBudget: ptr(1.0)}))
		list, err := s.Budgets(ctx, []store.BudgetRef{refTeam, refUser, refKey})
		must(t, err)
		if len(list) != 2 || list[0].BudgetRef != refTeam || list[1].BudgetRef != refKey {
			t.Errorf("Budgets: got %v, want [team key] in refs order", list)
		}
		list, err = s.Budgets(ctx, nil)
		must(t, err)
		if len(list) != 0 {
			t.Errorf("Budgets(nil): got %d, want 0", len(list))
		}

		must(t, s.DeleteBudget(ctx, refTeam))
		wantErr(t, errOf(s.Budget(ctx, refTeam)), store.ErrNotFound)
	})

	t.Run("Reserve", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		setMax(t, s, refKey, 10)
		setMax(t, s, refTeam, 3)
		exp := time.Now().Add(time.Hour)

		// Missing rows are created without a limit.
		must(t, s.Reserve(ctx, "a", []store.BudgetRef{refKey, refUser, refTeam}, 2, exp))
		u, err := s.Budget(ctx, refUser)
		must(t, err)
		if u.MaxBudget != nil || u.Reserved != 2 {
			t.Errorf("created budget: got max %v reserved %v, want no max, reserved 2", u.MaxBudget, u.Reserved)
		}
		diff(t, "key", spendOf(t, s, refKey), [2]float64{0, 2})

		tests := []struct {
			name      string
			id        string
			refs      []store.BudgetRef
			amount    float64
			wantScope store.BudgetScope // "" means it fits
			wantMax   float64
		}{
			{"team refuses", "b", []store.BudgetRef{refKey, refUser, refTeam}, 1.5, store.BudgetTeam, 3},
			{"first refusing in refs order", "c", []store.BudgetRef{refUser, refTeam, refKey}, 9, store.BudgetTeam, 3},
			{"first refusing in refs order, swapped", "d", []store.BudgetRef{refKey, refTeam}, 9, store.BudgetKey, 10},
			{"exact fit", "e", []store.BudgetRef{refKey, refTeam}, 1, "", 0},
			{"full now", "f", []store.BudgetRef{refTeam}, 0.01, store.BudgetTeam, 3},
			{"unlimited budgets never refuse", "g", []store.BudgetRef{refUser, refTag}, 1e6, "", 0},
			{"repeated ref counts once", "h", []store.BudgetRef{refKey, refKey}, 2, "", 0},
		}
		for _, tc := range tests {
			before := map[store.BudgetRef][2]float64{}
			for _, r := range tc.refs {
				before[r] = spendOf(t, s, r)
			}
			err := s.Reserve(ctx, tc.id, tc.refs, tc.amount, exp)
			if tc.wantScope == "" {
				if err != nil {
					t.Errorf("%s: got %v, want success", tc.name, err)
				}
				continue
			}
			var be *store.BudgetExceededError
			if !errors.As(err, &be) {
				t.Errorf("%s: got error %v, want *BudgetExceededError", tc.name, err)
				continue
			}
			if be.Scope != tc.wantScope || be.MaxBudget != tc.wantMax {
				t.Errorf("%s: refused by %s (max %v), want %s (max %v)", tc.name, be.Scope, be.MaxBudget, tc.wantScope, tc.wantMax)
			}
			b := before[store.BudgetRef{Scope: be.Scope, ID: be.ID}]
			if be.Spend != b[0] || be.Reserved != b[1] {
				t.Errorf("%s: error reports spend %v reserved %v, want %v %v", tc.name, be.Spend, be.Reserved, b[0], b[1])
			}
			for _, r := range tc.refs {
				if got := spendOf(t, s, r); got != before[r] {
					t.Errorf("%s: refused reservation changed %v: got %v, want %v", tc.name, r, got, before[r])
				}
			}
			// A refused id is not recorded: it can be used again.
			must(t, s.Reserve(ctx, tc.id, []store.BudgetRef{refTag}, 0, exp))
			must(t, s.Settle(ctx, tc.id, nil, 0))
		}
		diff(t, "key after table", spendOf(t, s, refKey), [2]float64{0, 5})
		diff(t, "team after table", spendOf(t, s, refTeam), [2]float64{0, 3})

		// A duplicate reservation ID conflicts and changes nothing.
		wantErr(t, s.Reserve(ctx, "a", []store.BudgetRef{refUser}, 1, exp), store.ErrConflict)
		diff(t, "user after duplicate", spendOf(t, s, refUser), [2]float64{0, 1e6 + 2})
	})

	t.Run("Settle", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		setMax(t, s, refKey, 10)
		now := time.Now()
		must(t, s.Reserve(ctx, "a", []store.BudgetRef{refKey, refTeam}, 4, now.Add(time.Hour)))
		must(t, s.Reserve(ctx, "b", []store.BudgetRef{refKey}, 3, now.Add(-time.Second)))  // already expired
		must(t, s.Reserve(ctx, "c", []store.BudgetRef{refKey}, 1, now.Add(2*time.Second))) // expires later

		// Settle uses the stored refs, ignoring the ones passed.
		must(t, s.Settle(ctx, "a", []store.BudgetRef{refUser}, 2.5))
		diff(t, "key after settle a", spendOf(t, s, refKey), [2]float64{2.5, 4})
		diff(t, "team after settle a", spendOf(t, s, refTeam), [2]float64{2.5, 0})
		wantErr(t, errOf(s.Budget(ctx, refUser)), store.ErrNotFound)

		n, err := s.ReleaseExpired(ctx, now)
		must(t, err)
		if n != 1 {
			t.Errorf("ReleaseExpired: got %d, want 1", n)
		}
		diff(t, "key after release", spendOf(t, s, refKey), [2]float64{2.5, 1})
		n, err = s.ReleaseExpired(ctx, now)
		must(t, err)
		if n != 0 {
			t.Errorf("second ReleaseExpired: got %d, want 0", n)
		}

		// Settling a released reservation still charges the spend, without touching Reserved.
		must(t, s.Settle(ctx, "b", []store.BudgetRef{refKey, refUser}, 3))
		diff(t, "key after late settle", spendOf(t, s, refKey), [2]float64{5.5, 1})
		diff(t, "user after late settle", spendOf(t, s, refUser), [2]float64{3, 0})

		// Settling twice charges twice only through the refs of the second call.
		must(t, s.Settle(ctx, "c", nil, 0))
		diff(t, "key after settle c", spendOf(t, s, refKey), [2]float64{5.5, 0})
		must(t, s.Settle(ctx, "c", nil, 7))
		diff(t, "key after settling c again without refs", spendOf(t, s, refKey), [2]float64{5.5, 0})

		// Spend may exceed the max through Settle (the call happened); new reservations are refused.
		must(t, s.Settle(ctx, "late", []store.BudgetRef{refKey}, 6))
		diff(t, "key over budget", spendOf(t, s, refKey), [2]float64{11.5, 0})
		var be *store.BudgetExceededError
		if err := s.Reserve(ctx, "d", []store.BudgetRef{refKey}, 0.01, now.Add(time.Hour)); !errors.As(err, &be) {
			t.Errorf("Reserve over an overspent budget: got %v, want *BudgetExceededError", err)
		}
	})

	t.Run("Reset", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		r1, r2 := t0, t0.Add(time.Hour)
		must(t, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: refKey, MaxBudget: ptr(5.0), Duration: "1h", ResetAt: &r1}))
		must(t, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: refTeam, Duration: "1h", ResetAt: &r2}))
		must(t, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: refUser}))
		charge(t, s, refKey, 4)

		tests := []struct {
			name string
			now  time.Time
			want []store.BudgetRef
		}{
			{"before any", t0.Add(-time.Second), nil},
			{"at reset time", t0, []store.BudgetRef{refKey}},
			{"both due", t0.Add(2 * time.Hour), []store.BudgetRef{refKey, refTeam}},
		}
		for _, tc := range tests {
			due, err := s.DueBudgets(ctx, tc.now)
			must(t, err)
			var got []store.BudgetRef
			for _, b := range due {
				got = append(got, b.BudgetRef)
			}
			diff(t, tc.name, got, tc.want)
		}

		next := t0.Add(time.Hour)
		ok, err := s.ResetBudget(ctx, refKey, r1, next)
		must(t, err)
		if !ok {
			t.Fatal("ResetBudget with the current ResetAt: got false, want true")
		}
		b, err := s.Budget(ctx, refKey)
		must(t, err)
		if b.Spend != 0 || b.ResetAt == nil || !b.ResetAt.Equal(next) || b.MaxBudget == nil || *b.MaxBudget != 5 {
			t.Errorf("after reset: got spend %v reset %v max %v, want 0, %v, 5", b.Spend, b.ResetAt, b.MaxBudget, next)
		}
		// A second replica with the stale expectation loses.
		charge(t, s, refKey, 1)
		ok, err = s.ResetBudget(ctx, refKey, r1, next.Add(time.Hour))
		must(t, err)
		if ok {
			t.Error("ResetBudget with a stale ResetAt: got true, want false")
		}
		diff(t, "spend after stale reset", spendOf(t, s, refKey), [2]float64{1, 0})
		ok, err = s.ResetBudget(ctx, refUser, r1, next)
		must(t, err)
		if ok {
			t.Error("ResetBudget of a budget without ResetAt: got true, want false")
		}
	})

	t.Run("Lease", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		steps := []struct {
			name   string
			lease  string
			holder string
			ttl    time.Duration
			want   bool
		}{
			{"free", "reset", "a", time.Hour, true},
			{"held by another", "reset", "b", time.Hour, false},
			{"renewed by holder", "reset", "a", time.Hour, true},
			{"other lease is independent", "flush", "b", time.Hour, true},
			{"still held", "reset", "b", time.Hour, false},
			{"holder lets it lapse", "reset", "a", -time.Second, true},
			{"expired lease taken over", "reset", "b", time.Hour, true},
			{"old holder locked out", "reset", "a", time.Hour, false},
		}
		for _, st := range steps {
			got, err := s.AcquireLease(ctx, st.lease, st.holder, st.ttl)
			must(t, err)
			if got != st.want {
				t.Errorf("%s: AcquireLease(%s, %s) got %v, want %v", st.name, st.lease, st.holder, got, st.want)
			}
		}

		// Concurrent contenders for a free lease: exactly one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				ok, err := s.AcquireLease(ctx, "race", fmt.Sprintf("h%d", i), time.Hour)
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
			t.Errorf("concurrent AcquireLease winners: got %d, want 1", n)
		}
	})

	t.Run("ReserveRace", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		const (
			callers = 100
			fits    = 17
			amount  = 0.1 // not exact in binary: the store must still admit exactly fits
		)
		setMax(t, s, refKey, fits*amount)
		setMax(t, s, refTeam, 1000)
		var ok, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				err := s.Reserve(ctx, fmt.Sprintf("race-%d", i), []store.BudgetRef{refTeam, refKey}, amount, time.Now().Add(time.Hour))
				var be *store.BudgetExceededError
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &be):
					if be.Scope != store.BudgetKey {
						t.Errorf("refused by %s, want key", be.Scope)
					}
					refused.Add(1)
				default:
					t.Errorf("Reserve: %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != fits || refused.Load() != callers-fits {
			t.Errorf("concurrent reservations: got %d admitted and %d refused, want %d and %d",
				ok.Load(), refused.Load(), fits, callers-fits)
		}
		for _, ref := range []store.BudgetRef{refKey, refTeam} {
			got := spendOf(t, s, ref)
			if d := got[1] - fits*amount; d > 1e-9 || d < -1e-9 {
				t.Errorf("%s reserved: got %v, want %v", ref.Scope, got[1], fits*amount)
			}
		}
	})

	t.Run("ReserveRaceOrders", func(t *testing.T) {
		// Callers name the same budgets in different orders; none may deadlock or fail, and
		// the tightest budget admits exactly what fits.
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		const callers, fits = 40, 7
		setMax(t, s, refTeam, fits)
		orders := [][]store.BudgetRef{
			{refKey, refUser, refTeam},
			{refTeam, refUser, refKey},
			{refUser, refTeam, refKey},
		}
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				err := s.Reserve(ctx, fmt.Sprintf("o-%d", i), orders[i%len(orders)], 1, time.Now().Add(time.Hour))
				var be *store.BudgetExceededError
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &be):
					if (store.BudgetRef{Scope: be.Scope, ID: be.ID}) != refTeam {
						t.Errorf("refused by %s %s, want %v", be.Scope, be.ID, refTeam)
					}
				default:
					t.Errorf("Reserve: %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != fits {
			t.Errorf("admitted: got %d, want %d", ok.Load(), fits)
		}
		for _, ref := range []store.BudgetRef{refKey, refUser, refTeam} {
			diff(t, string(ref.Scope), spendOf(t, s, ref), [2]float64{0, fits})
		}
	})

	t.Run("SettleConcurrent", func(t *testing.T) {
		// Concurrent settlements never lose an update.
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		const callers = 30
		refs := []store.BudgetRef{refKey, refTeam}
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				id := fmt.Sprintf("s-%d", i)
				if err := s.Reserve(ctx, id, refs, 1, time.Now().Add(time.Hour)); err != nil {
					t.Error(err)
					return
				}
				if err := s.Settle(ctx, id, refs, 0.5); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, ref := range refs {
			diff(t, string(ref.Scope), spendOf(t, s, ref), [2]float64{callers * 0.5, 0})
		}
	})
}
