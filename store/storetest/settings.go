package storetest

import "testing"

func testSettings(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
