package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// p50 reports the median of ds (in ms) under name.
func p50(b *testing.B, name string, ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	ms := float64(ds[len(ds)/2]) / float64(time.Millisecond)
	b.ReportMetric(ms, name)
	return ms
}

// BenchmarkToolsListCached lists 50 upstreams x 20 tools from the cache,
// through REST (f.ListTools) and over MCP (tools/list, 2026-07-28, HTTP).
func BenchmarkToolsListCached(b *testing.B) {
	u := newFake()
	var servers []Server
	for i := range 50 {
		name := fmt.Sprintf("server%02d", i)
		var tools []string
		for j := range 20 {
			tools = append(tools, fmt.Sprintf("tool_%02d", j))
		}
		u.setTools(name, tools...)
		servers = append(servers, Server{Name: name})
	}
	f, ts := newTestFederation(b, u, Config{}, servers...)
	ctx := context.Background()
	if tools, missing, _ := f.ListTools(ctx, nil); len(tools) != 1000 || len(missing) > 0 {
		b.Fatalf("warm-up: %d tools, missing %v", len(tools), missing)
	}
	b.Run("rest", func(b *testing.B) {
		ds := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			tools, _, _ := f.ListTools(ctx, nil)
			ds = append(ds, time.Since(start))
			if len(tools) != 1000 {
				b.Fatal(len(tools))
			}
		}
		p50(b, "p50-ms", ds)
	})
	b.Run("encode-only", func(b *testing.B) {
		// mcp-go's JSON encoding of the same 1000-tool result, for scale: the
		// floor under "mcp-server".
		tools, _, _ := f.ListTools(ctx, nil)
		res := mcp.ListToolsResult{Tools: make([]mcp.Tool, 0, len(tools))}
		for _, t := range tools {
			res.Tools = append(res.Tools, t.Tool)
		}
		ds := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			_ = json.NewEncoder(io.Discard).Encode(mcp.NewJSONRPCResultResponse(mcp.NewRequestId(1), res))
			ds = append(ds, time.Since(start))
		}
		p50(b, "p50-ms", ds)
	})
	// The gateway side only: raw tools/list POSTs, responses discarded, each
	// next to a REST list for the ratio; "fast" is the normal path (tool
	// encodings reused, fastlist.go), "mcp-go" lets mcp-go encode every tool.
	for _, e := range []era{legacy, modern} {
		for _, mode := range []string{"fast", "mcp-go"} {
			b.Run(fmt.Sprintf("mcp-server-%s-%s", e, mode), func(b *testing.B) {
				f.slowList.Store(mode == "mcp-go")
				defer f.slowList.Store(false)
				headers := map[string]string{"Mcp-Protocol-Version": mcp.ProtocolVersion20260728, "Mcp-Method": "tools/list"}
				body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
				if e == legacy {
					c := dial(b, ts.URL+"/mcp", legacy, "p", nil)
					headers = map[string]string{"Mcp-Session-Id": c.GetSessionId(), "Mcp-Protocol-Version": mcp.ProtocolVersion20251125}
					body = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
				}
				ds := make([]time.Duration, 0, b.N)
				rs := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				for b.Loop() {
					req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("X-Test-Principal", "p")
					for k, v := range headers {
						req.Header.Set(k, v)
					}
					start := time.Now()
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ds = append(ds, time.Since(start))
					if resp.StatusCode != http.StatusOK || n < 1000 {
						b.Fatal(resp.Status, n)
					}
					start = time.Now()
					tools, _, _ := f.ListTools(ctx, nil)
					rs = append(rs, time.Since(start))
					if len(tools) != 1000 {
						b.Fatal(len(tools))
					}
				}
				d := p50(b, "p50-ms", ds)
				if r := p50(b, "rest-p50-ms", rs); r > 0 {
					b.ReportMetric(d/r, "ratio-vs-rest")
				}
			})
		}
	}
	b.Run("mcp-client", func(b *testing.B) {
		c := dial(b, ts.URL+"/mcp", modern, "p", nil)
		ds := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
			ds = append(ds, time.Since(start))
			if err != nil || len(res.Tools) != 1000 {
				b.Fatal(err)
			}
		}
		p50(b, "p50-ms", ds)
	})
}

// BenchmarkToolsCall calls the same upstream tool directly and through the
// federation (real pool, HTTP both hops), alternating, and reports both
// medians, the added latency and the ratio.
func BenchmarkToolsCall(b *testing.B) {
	up := realUpstream(b, "a")
	_, ts := realFederation(b, Config{}, upstream.Spec{Name: "a", URL: up.URL})
	for _, e := range []era{modern, legacy} {
		b.Run(e.String(), func(b *testing.B) {
			direct := dial(b, up.URL, e, "p", nil)
			fed := dial(b, ts.URL+"/mcp", e, "p", nil)
			call := func(c *client.Client, name string) time.Duration {
				req := mcp.CallToolRequest{}
				req.Params.Name = name
				req.Params.Arguments = map[string]any{"message": "hi"}
				start := time.Now()
				if _, err := c.CallTool(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			call(fed, "a-echo") // warm the caches and connections
			var dd, fd []time.Duration
			for b.Loop() {
				dd = append(dd, call(direct, "echo"))
				fd = append(fd, call(fed, "a-echo"))
			}
			d := p50(b, "direct-p50-ms", dd)
			f := p50(b, "federated-p50-ms", fd)
			b.ReportMetric(f-d, "added-p50-ms")
			if d > 0 {
				b.ReportMetric(f/d, "ratio")
			}
		})
	}
}

// BenchmarkToolsCallParallel measures throughput with 16 and 64 concurrent
// clients, directly and through the federation; compare ns/op of the pairs.
func BenchmarkToolsCallParallel(b *testing.B) {
	up := realUpstream(b, "a")
	_, ts := realFederation(b, Config{}, upstream.Spec{Name: "a", URL: up.URL})
	for _, clients := range []int{16, 64} {
		for _, target := range []string{"direct", "federated"} {
			b.Run(fmt.Sprintf("%s-%d", target, clients), func(b *testing.B) {
				url, name := up.URL, "echo"
				if target == "federated" {
					url, name = ts.URL+"/mcp", "a-echo"
				}
				pool := make(chan *client.Client, clients)
				for range clients {
					pool <- dial(b, url, legacy, "p", nil)
				}
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((clients + procs - 1) / procs)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c := <-pool
					defer func() { pool <- c }()
					req := mcp.CallToolRequest{}
					req.Params.Name = name
					for pb.Next() {
						if _, err := c.CallTool(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkToolsListCold lists tools over MCP (2026-07-28, HTTP) right after
// registering upstreams that each answer tools/list after d: one upstream,
// 50 (20 tools each), and 50 answering at staggered times (spread evenly from
// d-10ms to d+10ms), in turn. A cold list should cost the slowest upstream
// plus a little ("minus-d", "minus-slowest"), never the sum of the upstreams.
func BenchmarkToolsListCold(b *testing.B) {
	const d = 30 * time.Millisecond
	one, oneURL, oneServers := coldFederation(b, 1, 20, d)
	fifty, fiftyURL, fiftyServers := coldFederation(b, 50, 20, d)
	stag, stagURL, stagServers := coldFederation(b, 50, 20, d)
	slowest := d + 10*time.Millisecond
	delays := map[string]time.Duration{}
	for i, s := range stagServers {
		delay := d - 10*time.Millisecond + time.Duration(i)*20*time.Millisecond/time.Duration(len(stagServers)-1)
		delays[s.Name], delays[s.Name+"_b"] = delay, delay
	}
	stag.up.(*slowUpstreams).delays = delays
	// Two names for each server: registering the other set makes every list
	// cold again.
	renamed := func(servers []Server, suffix string) []Server {
		out := make([]Server, len(servers))
		for i, s := range servers {
			out[i] = Server{Name: s.Name + suffix}
		}
		return out
	}
	for _, f := range []*Federation{one, fifty, stag} {
		u := f.up.(*slowUpstreams)
		u.mu.Lock()
		for name, tools := range u.tools {
			u.tools[name+"_b"] = tools
		}
		u.mu.Unlock()
	}
	sets := [3][2][]Server{{oneServers, renamed(oneServers, "_b")}, {fiftyServers, renamed(fiftyServers, "_b")},
		{stagServers, renamed(stagServers, "_b")}}
	list := func(f *Federation, url string, servers []Server, want int) time.Duration {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", mcp.ProtocolVersion20260728)
		req.Header.Set("Mcp-Method", "tools/list")
		start := time.Now()
		f.SetServers(servers)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if got := strings.Count(string(body), `"name":"s`); resp.StatusCode != http.StatusOK || got != want {
			b.Fatalf("cold list: %s, %d tools, want %d", resp.Status, got, want)
		}
		return took
	}
	var ones, fifties, stags []time.Duration
	i := 0
	for b.Loop() {
		ones = append(ones, list(one, oneURL, sets[0][i%2], 20))
		fifties = append(fifties, list(fifty, fiftyURL, sets[1][i%2], 1000))
		stags = append(stags, list(stag, stagURL, sets[2][i%2], 1000))
		i++
	}
	o := p50(b, "one-p50-ms", ones)
	m := p50(b, "fifty-p50-ms", fifties)
	st := p50(b, "staggered-p50-ms", stags)
	ms := float64(d) / float64(time.Millisecond)
	b.ReportMetric(o-ms, "one-minus-d-ms")
	b.ReportMetric(m-ms, "fifty-minus-d-ms")
	b.ReportMetric(m/ms, "fifty-over-d")
	b.ReportMetric(st-float64(slowest)/float64(time.Millisecond), "staggered-minus-slowest-ms")
}
