package storetest

import "testing"

func testSpend(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
