package budget_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/llm/budget/budgettest"
	"github.com/toolgate/toolgate/store"
)

var _ budget.Store = (*budgettest.Store)(nil)
var _ budget.SpendStore = (*budgettest.Store)(nil)

// backend is a budget store under test with a way to set a limit.
type backend struct {
	name     string
	st       budget.Store
	spend    budget.SpendStore
	setLimit func(t testing.TB, ref store.BudgetRef, max float64)
	upsert   func(t testing.TB, b *store.Budget)
	logs     func(t testing.TB) int
}

func fakeBackend() backend {
	s := budgettest.New()
	return backend{name: "memory", st: s, spend: s,
		setLimit: func(_ testing.TB, ref store.BudgetRef, max float64) { s.SetLimit(ref, &max, nil, "", nil) },
		upsert: func(_ testing.TB, b *store.Budget) {
			s.SetLimit(b.BudgetRef, b.MaxBudget, b.SoftBudget, b.Duration, b.ResetAt)
		},
		logs: func(t testing.TB) int {
			l, err := s.SpendLogs(context.Background(), store.SpendFilter{Limit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}}
}

func newManager(t testing.TB, st budget.Store) *budget.Manager {
	t.Helper()
	return newManagerWith(t, budget.Config{Store: st})
}

func newManagerWith(t testing.TB, cfg budget.Config) *budget.Manager {
	t.Helper()
	m, err := budget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// testRace runs 100 concurrent reservations against a key whose budget fits exactly n and
// checks that exactly n are admitted and that the spend log holds exactly those. n is
// large enough for leases (when leaseFor is set) to be taken before the budget runs low.
func testRace(t *testing.T, b backend, leaseFor time.Duration) {
	const total, n = 100, 73
	const cost = 0.25
	ref := store.BudgetRef{Scope: store.BudgetKey, ID: "race-key-" + leaseFor.String()}
	b.setLimit(t, ref, n*cost)
	logsBefore := b.logs(t)
	m := newManagerWith(t, budget.Config{Store: b.st, LeaseFor: leaseFor})
	sl, err := budget.NewSpendLog(budget.SpendLogConfig{Store: b.spend, BatchSize: 16, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := m.Reserve(ctx, []store.BudgetRef{ref, {Scope: store.BudgetTeam, ID: "race-team"}}, cost)
			var ee *budget.ExceededError
			switch {
			case errors.As(err, &ee):
				if ee.Scope != store.BudgetKey || ee.ID != ref.ID {
					t.Errorf("refused by %s %s, want key %s", ee.Scope, ee.ID, ref.ID)
				}
				refused.Add(1)
				return
			case err != nil:
				t.Error(err)
				return
			}
			admitted.Add(1)
			if err := r.Commit(ctx, cost); err != nil {
				t.Error(err)
			}
			if err := sl.Write(ctx, &store.SpendLog{RequestID: r.ID + string(rune('a'+i%26)), CallType: store.CallCompletion, KeyID: ref.ID, Spend: cost, StartTime: time.Now(), EndTime: time.Now(), Status: "success"}); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if err := sl.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := admitted.Load(); got != n {
		t.Errorf("admitted %d, want %d (refused %d)", got, n, refused.Load())
	}
	if got := b.logs(t) - logsBefore; got != n {
		t.Errorf("spend logs %d, want %d", got, n)
	}
	bs, err := b.st.Budgets(ctx, []store.BudgetRef{ref})
	if err != nil || len(bs) != 1 {
		t.Fatalf("budgets: %v %v", bs, err)
	}
	if bs[0].Reserved > 1e-9 || bs[0].Spend < n*cost-1e-9 || bs[0].Spend > n*cost+1e-9 {
		t.Errorf("after race: spend %v reserved %v, want spend %v reserved 0", bs[0].Spend, bs[0].Reserved, n*cost)
	}
}

func TestReserveRace(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testRace(t, b, 0) })
		t.Run(b.name+"/leases", func(t *testing.T) { testRace(t, b, time.Second) })
	}
}

func TestReserveCommitRelease(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "k-" + b.name}
			b.setLimit(t, key, 1)
			m := newManager(t, b.st)

			r, err := m.Reserve(ctx, []store.BudgetRef{key}, 0.6)
			if err != nil {
				t.Fatal(err)
			}
			// A second reservation of 0.6 does not fit while the first is held.
			if _, err := m.Reserve(ctx, []store.BudgetRef{key}, 0.6); !isExceeded(err) {
				t.Fatalf("second reserve: got %v, want ExceededError", err)
			}
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
			r2, err := m.Reserve(ctx, []store.BudgetRef{key}, 0.6)
			if err != nil {
				t.Fatalf("after release: %v", err)
			}
			if err := r2.Commit(ctx, 0.9); err != nil {
				t.Fatal(err)
			}
			if err := r2.Commit(ctx, 5); err != nil { // no-op
				t.Fatal(err)
			}
			_, err = m.Reserve(ctx, []store.BudgetRef{key}, 0.2)
			var ee *budget.ExceededError
			if !errors.As(err, &ee) {
				t.Fatalf("got %v, want ExceededError", err)
			}
			if ee.Spend < 0.9-1e-9 || ee.Spend > 0.9+1e-9 || ee.MaxBudget != 1 {
				t.Errorf("got spend %v max %v, want 0.9 and 1", ee.Spend, ee.MaxBudget)
			}
			if want := "Budget has been exceeded! Key=" + key.ID; len(ee.Error()) < len(want) || ee.Error()[:len(want)] != want {
				t.Errorf("message %q, want prefix %q", ee.Error(), want)
			}
		})
	}
}

func isExceeded(err error) bool {
	var ee *budget.ExceededError
	return errors.As(err, &ee)
}

func TestNoRefs(t *testing.T) {
	m := newManager(t, budgettest.New())
	r, err := m.Reserve(context.Background(), nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
}

func TestSweepReleasesExpired(t *testing.T) {
	st := budgettest.New()
	now := time.Now()
	clock := func() time.Time { return now }
	m, err := budget.New(budget.Config{Store: st, ReservationTTL: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
	max := 1.0
	st.SetLimit(key, &max, nil, "", nil)
	r, err := m.Reserve(ctx, []store.BudgetRef{key}, 1)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := st.Budget(ctx, key)
	if b.Reserved != 0 {
		t.Errorf("reserved after sweep %v, want 0", b.Reserved)
	}
	// Settling an expired reservation still charges the spend.
	if err := r.Commit(ctx, 0.5); err != nil {
		t.Fatal(err)
	}
	b, _ = st.Budget(ctx, key)
	if b.Spend != 0.5 || b.Reserved != 0 {
		t.Errorf("got spend %v reserved %v, want 0.5 and 0", b.Spend, b.Reserved)
	}
}

func TestResetDue(t *testing.T) {
	st := budgettest.New()
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
	max := 1.0
	due := now.Add(-time.Hour)
	st.SetLimit(key, &max, nil, "1d", &due)
	_ = st.Settle(ctx, "x", []store.BudgetRef{key}, 0.7)

	a, _ := budget.New(budget.Config{Store: st, Holder: "a", Now: func() time.Time { return now }})
	b, _ := budget.New(budget.Config{Store: st, Holder: "b", Now: func() time.Time { return now }})
	if err := a.ResetDue(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Budget(ctx, key)
	if got.Spend != 0 || !got.ResetAt.Equal(due.Add(24*time.Hour)) {
		t.Errorf("got spend %v reset %v, want 0 and %v", got.Spend, got.ResetAt, due.Add(24*time.Hour))
	}
	// b does not hold the lease: it must not act.
	_ = st.Settle(ctx, "y", []store.BudgetRef{key}, 0.3)
	past := now.Add(-time.Minute)
	st.SetLimit(key, &max, nil, "1d", &past)
	if err := b.ResetDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Budget(ctx, key); got.Spend != 0.3 {
		t.Errorf("replica without lease reset the budget: spend %v", got.Spend)
	}
}

func TestNextReset(t *testing.T) {
	base := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		dur  string
		now  time.Time
		want time.Time
	}{
		{"1d", base, base.Add(24 * time.Hour)},
		{"30s", base.Add(95 * time.Second), base.Add(120 * time.Second)},
		{"1h", base.Add(-time.Minute), base},
		{"1w", base, base.Add(7 * 24 * time.Hour)},
		{"1mo", base, time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		got, err := budget.NextReset(tc.dur, base, tc.now)
		if err != nil {
			t.Fatalf("%s: %v", tc.dur, err)
		}
		if !got.Equal(tc.want) {
			t.Errorf("NextReset(%s) = %v, want %v", tc.dur, got, tc.want)
		}
	}
	for _, bad := range []string{"", "d", "0d", "-1d", "5x", "1.5h"} {
		if _, _, err := budget.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q): got nil error", bad)
		}
	}
}

func TestSoftBudgetAlertOncePerPeriod(t *testing.T) {
	var mu sync.Mutex
	var alerts []budget.Alert
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a budget.Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Error(err)
		}
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}))
	defer srv.Close()
	st := budgettest.New()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "k"}
	soft := 0.5
	st.SetLimit(key, nil, &soft, "", nil)
	m, _ := budget.New(budget.Config{Store: st, AlertURL: srv.URL})
	ctx := context.Background()
	for range 3 {
		r, err := m.Reserve(ctx, []store.BudgetRef{key}, 0.3)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(ctx, 0.3); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(alerts))
	}
	if a := alerts[0]; a.Event != "soft_budget_crossed" || a.ID != "k" || a.SoftBudget != 0.5 {
		t.Errorf("got %+v", a)
	}
}

func TestToolCost(t *testing.T) {
	c := store.MCPServerCost{DefaultCostPerQuery: 0.01, ToolNameToCostPerQuery: map[string]float64{"search": 0.05, "free": 0}}
	for tool, want := range map[string]float64{"search": 0.05, "free": 0, "other": 0.01} {
		if got := budget.ToolCost(c, tool); got != want {
			t.Errorf("ToolCost(%s) = %v, want %v", tool, got, want)
		}
	}
}

func TestResetDueOnStores(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			due := now.Add(-time.Hour)
			later := now.Add(time.Hour)
			max := 10.0
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "due-" + b.name}
			notDue := store.BudgetRef{Scope: store.BudgetKey, ID: "later-" + b.name}
			b.upsert(t, &store.Budget{BudgetRef: key, MaxBudget: &max, Duration: "1d", ResetAt: &due})
			b.upsert(t, &store.Budget{BudgetRef: notDue, MaxBudget: &max, Duration: "1d", ResetAt: &later})
			m, _ := budget.New(budget.Config{Store: b.st, Holder: "replica-" + b.name, Now: func() time.Time { return now }})
			for _, ref := range []store.BudgetRef{key, notDue} {
				r, err := m.Reserve(ctx, []store.BudgetRef{ref}, 1)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Commit(ctx, 3); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.ResetDue(ctx); err != nil {
				t.Fatal(err)
			}
			bs, err := b.st.Budgets(ctx, []store.BudgetRef{key, notDue})
			if err != nil || len(bs) != 2 {
				t.Fatalf("budgets %v %v", bs, err)
			}
			if bs[0].Spend != 0 || bs[0].ResetAt == nil || !bs[0].ResetAt.Equal(due.Add(24*time.Hour)) {
				t.Errorf("due budget: spend %v reset %v, want 0 and %v", bs[0].Spend, bs[0].ResetAt, due.Add(24*time.Hour))
			}
			if bs[1].Spend != 3 {
				t.Errorf("budget not due was reset: spend %v", bs[1].Spend)
			}
		})
	}
}

func TestExceededErrorNamesTheBudget(t *testing.T) {
	tests := []struct {
		err  budget.ExceededError
		want string
	}{
		{budget.ExceededError{Scope: store.BudgetKey, ID: "k1", MaxBudget: 1, Spend: 0.41, Reserved: 0.4}, "Budget has been exceeded! Key=k1 Current cost: 0.81, Max budget: 1"},
		{budget.ExceededError{Scope: store.BudgetTeamMember, ID: "t/u", MaxBudget: 5, Spend: 5}, "Budget has been exceeded! TeamMember=t/u Current cost: 5, Max budget: 5"},
		{budget.ExceededError{Scope: store.BudgetEndUser, ID: "alice", MaxBudget: 0.1, Spend: 0.1}, "Budget has been exceeded! EndUser=alice Current cost: 0.1, Max budget: 0.1"},
		{budget.ExceededError{Scope: store.BudgetTag, ID: "prod", MaxBudget: 2, Spend: 2.5}, "Budget has been exceeded! Tag=prod Current cost: 2.5, Max budget: 2"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestNoLimitHoldsNothing: a call whose budgets have no max budget holds nothing in the
// store (no reservation, Reserved stays 0) but is still charged; once one of its budgets
// gets a max budget, the very next call is reserved and refused when it does not fit.
func TestNoLimitHoldsNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "free-" + b.name}
			team := store.BudgetRef{Scope: store.BudgetTeam, ID: "team-" + b.name}
			refs := []store.BudgetRef{key, team}
			m := newManager(t, b.st)
			r, err := m.Reserve(ctx, refs, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if r.Held {
				t.Error("reservation without a max budget: got Held, want nothing held")
			}
			if got := budgetsOf(t, b.st, refs); got[team][1] != 0 || got[key][1] != 0 {
				t.Errorf("reserved while held-free reservation open: got %v, want 0", got)
			}
			if err := r.Commit(ctx, 0.4); err != nil {
				t.Fatal(err)
			}
			for ref, sr := range budgetsOf(t, b.st, refs) {
				if sr[0] < 0.4-1e-9 || sr[0] > 0.4+1e-9 || sr[1] != 0 {
					t.Errorf("%s after commit: got spend %v reserved %v, want 0.4 and 0", ref.Scope, sr[0], sr[1])
				}
			}
			b.setLimit(t, team, 1)
			r2, err := m.Reserve(ctx, refs, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if !r2.Held {
				t.Error("reservation after a max budget was set: not held")
			}
			if _, err := m.Reserve(ctx, refs, 0.5); !isExceeded(err) {
				t.Fatalf("third reservation of 0.5 on 0.4 spent + 0.5 held of 1: got %v, want ExceededError", err)
			}
			if err := r2.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// budgetsOf returns spend and reserved of each ref that has a row.
func budgetsOf(t testing.TB, st budget.Store, refs []store.BudgetRef) map[store.BudgetRef][2]float64 {
	t.Helper()
	bs, err := st.Budgets(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	out := map[store.BudgetRef][2]float64{}
	for _, b := range bs {
		out[b.BudgetRef] = [2]float64{b.Spend, b.Reserved}
	}
	return out
}

// countingStore counts the reservations that reach the store.
type countingStore struct {
	budget.Store
	reserves atomic.Int64
}

func (s *countingStore) Reserve(ctx context.Context, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error {
	s.reserves.Add(1)
	return s.Store.Reserve(ctx, id, refs, amount, expiresAt)
}

// TestLeasesKeepTheStoreOffTheRequestPath: with leases, a thousand calls reach the store
// as a handful of reservations; a chain's first lease holds 8 calls' worth and later ones
// grow, but no lease holds more than 1/8 of the headroom left; the spend of every call is
// in the store once the leases settle.
func TestLeasesKeepTheStoreOffTheRequestPath(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "lease-" + b.name}
			free := store.BudgetRef{Scope: store.BudgetUser, ID: "free-" + b.name}
			b.setLimit(t, key, 800)
			cs := &countingStore{Store: b.st}
			m := newManagerWith(t, budget.Config{Store: cs, LeaseFor: time.Hour})
			r, err := m.Reserve(ctx, []store.BudgetRef{key, free}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := budgetsOf(t, b.st, []store.BudgetRef{key})[key][1]; got != 8 {
				t.Errorf("first lease for calls of 1: reserved %v, want 8", got)
			}
			big := store.BudgetRef{Scope: store.BudgetKey, ID: "big-" + b.name}
			b.setLimit(t, big, 800)
			rb, err := m.Reserve(ctx, []store.BudgetRef{big}, 50)
			if err != nil {
				t.Fatal(err)
			}
			if got := budgetsOf(t, b.st, []store.BudgetRef{big})[big][1]; got != 100 {
				t.Errorf("first lease for calls of 50 on 800 of headroom: reserved %v, want 100 (1/8, not 8 x 50)", got)
			}
			if err := rb.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(ctx, 0.5); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 250 {
						r, err := m.Reserve(ctx, []store.BudgetRef{key, free}, 0.25)
						if err != nil {
							t.Error(err)
							return
						}
						if err := r.Commit(ctx, 0.25); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			if n := cs.reserves.Load(); n > 12 {
				t.Errorf("1002 calls made %d reservations in the store, want a few leases", n)
			}
			if err := m.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for ref, sr := range budgetsOf(t, b.st, []store.BudgetRef{key, free}) {
				if want := 0.5 + 1000*0.25; sr[0] < want-1e-6 || sr[0] > want+1e-6 || sr[1] > 1e-9 {
					t.Errorf("%s after flush: spend %v reserved %v, want %v and 0", ref.Scope, sr[0], sr[1], want)
				}
			}
		})
	}
}

// TestUnlimitedLeaseHoldsNothing: calls whose budgets have no max budget are admitted
// without any reservation in the store, and their spend is all there once the lease
// settles.
func TestUnlimitedLeaseHoldsNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			refs := []store.BudgetRef{{Scope: store.BudgetKey, ID: "open-" + b.name}, {Scope: store.BudgetEndUser, ID: "eu-" + b.name}}
			cs := &countingStore{Store: b.st}
			m := newManagerWith(t, budget.Config{Store: cs, LeaseFor: time.Hour})
			for range 100 {
				r, err := m.Reserve(ctx, refs, 0.5)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Commit(ctx, 0.25); err != nil {
					t.Fatal(err)
				}
			}
			if n := cs.reserves.Load(); n != 0 {
				t.Errorf("100 calls with no max budget made %d reservations in the store, want 0", n)
			}
			if settled, err := m.FlushBudgets(ctx, refs[1:]); err != nil || !settled {
				t.Fatalf("FlushBudgets: %v %v, want a lease settled", settled, err)
			}
			for ref, sr := range budgetsOf(t, b.st, refs) {
				if sr[0] != 25 || sr[1] != 0 {
					t.Errorf("%s: spend %v reserved %v, want 25 and 0", ref.Scope, sr[0], sr[1])
				}
			}
		})
	}
}

// admitOne reserves cost on refs and, when the call is admitted, counts it and commits
// cost. A refusal is not an error.
func admitOne(t testing.TB, m *budget.Manager, refs []store.BudgetRef, cost float64, admitted *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	r, err := m.Reserve(ctx, refs, cost)
	if isExceeded(err) {
		return
	}
	if err != nil {
		t.Error(err)
		return
	}
	admitted.Add(1)
	if err := r.Commit(ctx, cost); err != nil {
		t.Error(err)
	}
}

// TestLeasesAcrossReplicas: two managers with leases on one store (two gateway replicas)
// never admit more than the budget fits, and the store ends with exactly the spend of the
// calls they admitted.
func TestLeasesAcrossReplicas(t *testing.T) {
	for _, b := range backends(t) {
		if b.name == "memory" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			const fits, cost = 300, 0.1
			ctx := context.Background()
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "replicas-" + b.name}
			b.setLimit(t, key, fits*cost)
			replicas := []*budget.Manager{
				newManagerWith(t, budget.Config{Store: b.st, LeaseFor: 20 * time.Millisecond}),
				newManagerWith(t, budget.Config{Store: b.st, LeaseFor: 20 * time.Millisecond}),
			}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := replicas[i%2]
					for range 40 {
						admitOne(t, m, []store.BudgetRef{key}, cost, &admitted)
					}
				}()
			}
			wg.Wait()
			for _, m := range replicas {
				if err := m.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			n := admitted.Load()
			if n > fits || n < fits*9/10 {
				t.Errorf("admitted %d of 640 calls on a budget that fits %d, want at most %d and not far fewer", n, fits, fits)
			}
			sr := budgetsOf(t, b.st, []store.BudgetRef{key})[key]
			if want := float64(n) * cost; sr[0] < want-1e-6 || sr[0] > want+1e-6 || sr[1] > 1e-9 {
				t.Errorf("after flush: spend %v reserved %v, want %v and 0", sr[0], sr[1], want)
			}
		})
	}
}

// TestCloseSettlesLeaseAfterItsLastCall: Close waits for a call still running on a lease
// and charges what it spent.
func TestCloseSettlesLeaseAfterItsLastCall(t *testing.T) {
	b := fakeBackend()
	ctx := context.Background()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "closing"}
	m, err := budget.New(budget.Config{Store: b.st, LeaseFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Reserve(ctx, []store.BudgetRef{key}, 1)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a call was running on a lease", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := r.Commit(ctx, 0.75); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if sr := budgetsOf(t, b.st, []store.BudgetRef{key})[key]; sr[0] != 0.75 || sr[1] != 0 {
		t.Errorf("after close: spend %v reserved %v, want 0.75 and 0", sr[0], sr[1])
	}
}

// TestLeasesManyChainsExact: calls on one key from many end users (a chain each, so a
// lease each) still admit exactly what the key's budget fits on one replica: a refused
// call waits for the other chains' leases to give back their unused part.
func TestLeasesManyChainsExact(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			const total, fits, cost = 120, 50, 0.5
			ctx := context.Background()
			key := store.BudgetRef{Scope: store.BudgetKey, ID: "chains-" + b.name}
			b.setLimit(t, key, fits*cost)
			m := newManagerWith(t, budget.Config{Store: b.st, LeaseFor: time.Hour})
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range total {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					refs := []store.BudgetRef{key, {Scope: store.BudgetEndUser, ID: fmt.Sprint("user-", i%40)}}
					admitOne(t, m, refs, cost, &admitted)
				}()
			}
			close(start)
			wg.Wait()
			if err := m.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := admitted.Load(); got != fits {
				t.Errorf("admitted %d of %d calls from 40 end users on a key that fits %d", got, total, fits)
			}
			if sr := budgetsOf(t, b.st, []store.BudgetRef{key})[key]; sr[0] != fits*cost || sr[1] > 1e-9 {
				t.Errorf("key: spend %v reserved %v, want %v and 0", sr[0], sr[1], fits*cost)
			}
		})
	}
}
