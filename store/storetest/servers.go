package storetest

import "testing"

func testServers(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
