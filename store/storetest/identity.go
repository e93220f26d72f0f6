package storetest

import "testing"

func testIdentity(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
