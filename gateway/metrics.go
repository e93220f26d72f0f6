package gateway

import (
	"context"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/toolgate/toolgate/gateway/federation"
)

// metrics are the gateway's Prometheus collectors, in a registry of its own so that several
// Servers (tests) never collide. Other route files add theirs with s.metrics.registry.MustRegister.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec   // route, method, status
	duration *prometheus.HistogramVec // route
	calls    *prometheus.CounterVec   // server, tool, outcome
	callTime *prometheus.HistogramVec // server
	health   *prometheus.GaugeVec     // server
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_http_requests_total",
			Help: "HTTP requests by matched route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_http_request_duration_seconds",
			Help:    "HTTP request latency by matched route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_mcp_tool_calls_total",
			Help: "MCP tool calls by upstream server, tool and outcome (success, error, tool_error, refused).",
		}, []string{"server", "tool", "outcome"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_mcp_tool_call_duration_seconds",
			Help:    "MCP tool call latency by upstream server.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"server"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "toolgate_upstream_healthy",
			Help: "1 when the upstream's last tools/list succeeded, else 0.",
		}, []string{"server"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.calls, m.callTime, m.health,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// callHook counts tool calls around the hook that other work installs (budgets).
type callHook struct {
	m    *metrics
	next func() federation.CallHook // read per call so a hook installed later is used
}

var _ federation.CallHook = (*callHook)(nil)

func (h *callHook) BeforeToolCall(ctx context.Context, server, tool string) (func(*mcp.CallToolResult, error), error) {
	start := time.Now()
	var done func(*mcp.CallToolResult, error)
	if next := h.next(); next != nil {
		d, err := next.BeforeToolCall(ctx, server, tool)
		if err != nil {
			h.m.calls.WithLabelValues(server, tool, "refused").Inc()
			return nil, err
		}
		done = d
	}
	return func(res *mcp.CallToolResult, err error) {
		outcome := "success"
		switch {
		case err != nil:
			outcome = "error"
		case res != nil && res.IsError:
			outcome = "tool_error"
		}
		h.m.calls.WithLabelValues(server, tool, outcome).Inc()
		h.m.callTime.WithLabelValues(server).Observe(time.Since(start).Seconds())
		if done != nil {
			done(res, err)
		}
	}, nil
}
