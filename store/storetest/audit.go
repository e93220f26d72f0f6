package storetest

import "testing"

func testAudit(t *testing.T, newStore NewStore) {
	t.Skip("not written yet")
}
