package storetest

import "testing"

func testOAuth(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
