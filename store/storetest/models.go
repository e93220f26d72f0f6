package storetest

import "testing"

func testModels(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
