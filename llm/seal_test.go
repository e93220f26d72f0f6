package llm_test

import (
	"testing"

	"github.com/toolgate/toolgate/internal/seal"
	"github.com/toolgate/toolgate/llm"
)

func testSealer(t testing.TB) llm.Sealer {
	t.Helper()
	b, err := seal.New("test-secret-test-secret-test-secret")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
