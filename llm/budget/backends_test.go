package budget_test

import "testing"

// backends lists the stores the shared tests run on: the in-memory fake always, SQLite and
// Postgres once the store implementations exist.
func backends(t *testing.T) []backend {
	t.Helper()
	return []backend{fakeBackend()}
}
