package budget_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines of the budget core (loops, spend log, alerts) or HTTP
// connections outlive the tests: every Close must leave nothing behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitLeaks(5 * time.Second); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n\n%s\n", len(leaks), strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

func waitLeaks(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		leaks := leakedGoroutines()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "testing.(*M)") {
			continue
		}
		if strings.Contains(g, "toolgate/toolgate/llm") ||
			strings.Contains(g, "net/http.(*persistConn)") ||
			strings.Contains(g, "net/http/httptest") {
			out = append(out, g)
		}
	}
	return out
}
