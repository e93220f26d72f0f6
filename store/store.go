package store

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a write would break a uniqueness rule (a duplicate name, say).
	ErrConflict = errors.New("conflict")
)

// BudgetExceededError is returned by Reserve when a reservation does not fit one of the
// budgets it must be charged against. It wraps nothing; test for it with errors.As.
type BudgetExceededError struct {
	Scope     BudgetScope // which kind of budget refused, e.g. BudgetKey
	ID        string      // the budget's entity ID
	MaxBudget float64     // its limit
	Spend     float64     // committed spend at the time of the refusal
	Reserved  float64     // reservations in flight at the time of the refusal
}

func (e *BudgetExceededError) Error() string {
	return fmt.Sprintf("budget exceeded: %s %s: spend %.6f + reserved %.6f would exceed max_budget %.6f",
		e.Scope, e.ID, e.Spend, e.Reserved, e.MaxBudget)
}

// Store is the contract every storage backend implements. It is the union of the per-domain
// contracts below; consumers declare the narrow interface they need instead of taking Store.
type Store interface {
	ServerStore
	AuditStore
	SettingStore
	IdentityStore
	ToolsetStore
	BudgetStore
	SpendStore
	ModelStore
	OAuthStore

	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the database. The Store must not be used afterwards.
	Close() error
}
