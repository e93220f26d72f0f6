// Package storetest is the behavioural suite every store.Store implementation must pass.
// An implementation's test calls Run with a function that returns a fresh, open, empty store.
package storetest

import (
	"testing"

	"github.com/toolgate/toolgate/store"
)

// NewStore returns a fresh, open, empty store. It registers its own cleanup with t.
type NewStore func(t testing.TB) store.Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("Servers", func(t *testing.T) { testServers(t, newStore) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, newStore) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, newStore) })
	t.Run("Identity", func(t *testing.T) { testIdentity(t, newStore) })
	t.Run("Toolsets", func(t *testing.T) { testToolsets(t, newStore) })
	t.Run("Budget", func(t *testing.T) { testBudget(t, newStore) })
	t.Run("Spend", func(t *testing.T) { testSpend(t, newStore) })
	t.Run("Models", func(t *testing.T) { testModels(t, newStore) })
	t.Run("OAuth", func(t *testing.T) { testOAuth(t, newStore) })
}
