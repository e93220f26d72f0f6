// Package budgettest provides an in-memory implementation of the budget and spend stores
// for tests of packages that use llm/budget.
package budgettest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/toolgate/toolgate/store"
)

// Store is an in-memory budget.Store and budget.SpendStore with store.BudgetStore
// semantics. It is safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	b      map[store.BudgetRef]*store.Budget
	res    map[string]reservation
	leases map[string]lease
	logs   []*store.SpendLog
	seen   map[string]bool
}

type reservation struct {
	refs    []store.BudgetRef
	amount  float64
	expires time.Time
}

type lease struct {
	holder string
	until  time.Time
}

// New returns an empty Store.
func New() *Store {
	return &Store{b: map[store.BudgetRef]*store.Budget{}, res: map[string]reservation{},
		leases: map[string]lease{}, seen: map[string]bool{}}
}

// SetLimit creates or updates a budget's max and soft budget.
func (s *Store) SetLimit(ref store.BudgetRef, max, soft *float64, duration string, resetAt *time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.get(ref)
	b.MaxBudget, b.SoftBudget, b.Duration, b.ResetAt = max, soft, duration, resetAt
}

func (s *Store) get(ref store.BudgetRef) *store.Budget {
	b := s.b[ref]
	if b == nil {
		b = &store.Budget{BudgetRef: ref}
		s.b[ref] = b
	}
	return b
}

// Budget returns a copy of one budget, or store.ErrNotFound.
func (s *Store) Budget(_ context.Context, ref store.BudgetRef) (*store.Budget, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b[ref]
	if b == nil {
		return nil, store.ErrNotFound
	}
	c := *b
	return &c, nil
}

// Budgets implements budget.Store.
func (s *Store) Budgets(_ context.Context, refs []store.BudgetRef) ([]*store.Budget, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Budget
	for _, r := range refs {
		if b := s.b[r]; b != nil {
			c := *b
			out = append(out, &c)
		}
	}
	return out, nil
}

// Reserve implements budget.Store.
func (s *Store) Reserve(_ context.Context, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.res[id]; ok {
		return store.ErrConflict
	}
	for _, r := range refs {
		b := s.get(r)
		if b.MaxBudget != nil && b.Spend+b.Reserved+amount > *b.MaxBudget {
			return &store.BudgetExceededError{Scope: r.Scope, ID: r.ID, MaxBudget: *b.MaxBudget, Spend: b.Spend, Reserved: b.Reserved}
		}
	}
	for _, r := range refs {
		s.get(r).Reserved += amount
	}
	s.res[id] = reservation{refs: append([]store.BudgetRef(nil), refs...), amount: amount, expires: expiresAt}
	return nil
}

// Settle implements budget.Store.
func (s *Store) Settle(_ context.Context, id string, refs []store.BudgetRef, actual float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.res[id]; ok {
		delete(s.res, id)
		refs = r.refs
		for _, ref := range refs {
			s.get(ref).Reserved -= r.amount
		}
	}
	for _, ref := range refs {
		s.get(ref).Spend += actual
	}
	return nil
}

// ReleaseExpired implements budget.Store.
func (s *Store) ReleaseExpired(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.res {
		if r.expires.Before(now) {
			for _, ref := range r.refs {
				s.get(ref).Reserved -= r.amount
			}
			delete(s.res, id)
			n++
		}
	}
	return n, nil
}

// DueBudgets implements budget.Store.
func (s *Store) DueBudgets(_ context.Context, now time.Time) ([]*store.Budget, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Budget
	for _, b := range s.b {
		if b.ResetAt != nil && !b.ResetAt.After(now) {
			c := *b
			out = append(out, &c)
		}
	}
	return out, nil
}

// ResetBudget implements budget.Store.
func (s *Store) ResetBudget(_ context.Context, ref store.BudgetRef, expect, next time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b[ref]
	if b == nil || b.ResetAt == nil || !b.ResetAt.Equal(expect) {
		return false, nil
	}
	b.Spend = 0
	b.ResetAt = &next
	return true, nil
}

// AcquireLease implements budget.Store.
func (s *Store) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	l, ok := s.leases[name]
	if ok && l.holder != holder && l.until.After(now) {
		return false, nil
	}
	s.leases[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// InsertSpendLogs implements budget.SpendStore.
func (s *Store) InsertSpendLogs(_ context.Context, logs []*store.SpendLog) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logs {
		if s.seen[l.RequestID] {
			continue
		}
		s.seen[l.RequestID] = true
		c := *l
		s.logs = append(s.logs, &c)
	}
	return nil
}

// SpendLogs returns matching rows, newest first.
func (s *Store) SpendLogs(_ context.Context, f store.SpendFilter) ([]*store.SpendLog, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.SpendLog
	for _, l := range s.logs {
		if (f.RequestID != "" && l.RequestID != f.RequestID) || (f.KeyID != "" && l.KeyID != f.KeyID) ||
			(f.UserID != "" && l.UserID != f.UserID) || (f.TeamID != "" && l.TeamID != f.TeamID) ||
			(f.OrgID != "" && l.OrgID != f.OrgID) || (!f.Start.IsZero() && l.StartTime.Before(f.Start)) ||
			(!f.End.IsZero() && !l.StartTime.Before(f.End)) {
			continue
		}
		c := *l
		out = append(out, &c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime.After(out[j].StartTime) })
	limit := f.Limit
	if limit == 0 {
		limit = 1000
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
