package federation

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// 1,000 idle 2025-era sessions stay well under 100 MiB.
func TestIdleSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	u, servers := twoServers()
	_, ts := newTestFederation(t, u, Config{}, servers...)
	post := func(body, session string) string {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("X-Test-Principal", "p")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Mcp-Session-Id")
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for range 1000 {
		id := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, "")
		if id == "" {
			t.Fatal("no session")
		}
		post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, id)
		post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, id)
	}
	grown := float64(heap()-before) / (1 << 20)
	t.Logf("1000 idle sessions: %.1f MiB", grown)
	if grown > 100 {
		t.Errorf("1000 idle sessions use %.1f MiB, want < 100", grown)
	}
}
