package upstream

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// BenchmarkCallTool measures tools/call through the pool to an in-process
// upstream over loopback HTTP; compare with BenchmarkCallToolDirect from
// the same run for the pool's overhead.
func BenchmarkCallTool(b *testing.B) {
	f := newFake(b, "http")
	p := newPool(b, Config{}, f.spec("up"))
	ctx := context.Background()
	req := callReq("echo", map[string]any{"text": "hi"})
	if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8) // 16 concurrent callers on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCallToolDirect is the baseline: a plain mcp-go client, set up as
// the pool sets its clients up, calling the same kind of upstream.
func BenchmarkCallToolDirect(b *testing.B) {
	f := newFake(b, "http")
	c := directClient(b, f.url())
	ctx := context.Background()
	req := callReq("echo", map[string]any{"text": "hi"})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.CallTool(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.CallTool(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCallToolRatio alternates a pool call and a direct call to one
// upstream in every iteration, so that load from other processes hits both
// alike, and reports each one's time and their ratio.
func BenchmarkCallToolRatio(b *testing.B) {
	f := newFake(b, "http")
	p := newPool(b, Config{}, f.spec("up"))
	c := directClient(b, f.url())
	ctx := context.Background()
	req := callReq("echo", map[string]any{"text": "hi"})
	if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
		b.Fatal(err)
	}
	var pool, direct time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := c.CallTool(ctx, req); err != nil {
			b.Fatal(err)
		}
		pool += t1.Sub(t0)
		direct += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(pool.Nanoseconds())/n, "pool-ns/call")
	b.ReportMetric(float64(direct.Nanoseconds())/n, "direct-ns/call")
	b.ReportMetric(float64(pool)/float64(direct), "pool/direct")
}

// BenchmarkCallToolRatioParallel is BenchmarkCallToolRatio with 16
// concurrent callers, each alternating a pool call and a direct call.
func BenchmarkCallToolRatioParallel(b *testing.B) {
	f := newFake(b, "http")
	p := newPool(b, Config{}, f.spec("up"))
	c := directClient(b, f.url())
	ctx := context.Background()
	req := callReq("echo", map[string]any{"text": "hi"})
	if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
		b.Fatal(err)
	}
	var pool, direct atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t0 := time.Now()
			if _, err := p.CallTool(ctx, "up", req, nil); err != nil {
				b.Error(err)
				return
			}
			t1 := time.Now()
			if _, err := c.CallTool(ctx, req); err != nil {
				b.Error(err)
				return
			}
			pool.Add(int64(t1.Sub(t0)))
			direct.Add(int64(time.Since(t1)))
		}
	})
	n := float64(b.N)
	b.ReportMetric(float64(pool.Load())/n, "pool-ns/call")
	b.ReportMetric(float64(direct.Load())/n, "direct-ns/call")
	b.ReportMetric(float64(pool.Load())/float64(direct.Load()), "pool/direct")
}

// directClient returns an initialized plain mcp-go client with the options
// the pool uses (legacy protocol, continuous listening, a private transport).
func directClient(b *testing.B, url string) *client.Client { return directClientT(b, url) }

func directClientT(b testing.TB, url string) *client.Client {
	b.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	hc := &http.Client{Transport: tr}
	b.Cleanup(hc.CloseIdleConnections)
	//lint:ignore SA1019 same options as the pool
	t, err := transport.NewStreamableHTTP(url, transport.WithHTTPBasicClient(hc), transport.WithContinuousListening(), transport.WithHTTPLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	c := client.NewClient(t, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "bench", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	return c
}
