package storetest

import "testing"

func testToolsets(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
