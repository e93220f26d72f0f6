package gateway

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/store"
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
	inflight prometheus.GaugeFunc     // tool calls in flight

	sessions   prometheus.Gauge       // active MCP sessions
	cache      *prometheus.CounterVec // cache, result
	rejections *prometheus.CounterVec // scope
	spend      *prometheus.CounterVec // call_type, model, mcp_server
	tokens     *prometheus.CounterVec // model, type
	spendRows  *prometheus.CounterVec // call_type, status

	calling atomic.Int64 // tool calls in flight; read by the drain at shutdown
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
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "toolgate_mcp_sessions",
			Help: "Open MCP sessions (2025-era streamable HTTP and SSE) on this replica.",
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_cache_lookups_total",
			Help: "Cache lookups by cache (key: virtual keys; mcp_list: upstream tool, prompt and resource lists) and result (hit, miss).",
		}, []string{"cache", "result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_budget_rejections_total",
			Help: "Calls (LLM and MCP tool) refused because a budget was spent, by budget scope (key, user, team, team_member, org, end_user, tag).",
		}, []string{"scope"}),
		spend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_spend_usd_total",
			Help: "Spend written to the spend log, in USD, by call type, model (LLM calls) and MCP server (tool calls).",
		}, []string{"call_type", "model", "mcp_server"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_llm_tokens_total",
			Help: "LLM tokens of successful calls written to the spend log, by model and type (prompt, completion).",
		}, []string{"model", "type"}),
		spendRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_spend_log_rows_total",
			Help: "Spend log rows written to the database, by call type and status (success, failure).",
		}, []string{"call_type", "status"}),
	}
	m.inflight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "toolgate_mcp_tool_calls_in_flight",
		Help: "MCP tool calls running now on this replica.",
	}, func() float64 { return float64(m.calling.Load()) })
	m.registry.MustRegister(m.requests, m.duration, m.calls, m.callTime, m.health, m.inflight,
		m.sessions, m.cache, m.rejections, m.spend, m.tokens, m.spendRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// hitMiss is the result label of a cache lookup.
func hitMiss(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}

// meteredStore counts the spend rows the spend log persists through it. Counting at the
// store means spend is counted once it is written, whichever path (LLM or MCP tool call)
// wrote it. Budget refusals are counted by the budget core's OnExceeded hook: a refused
// budget lease is not a refused call.
type meteredStore struct {
	store.Store
	m *metrics
}

func (s meteredStore) InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error {
	err := s.Store.InsertSpendLogs(ctx, logs)
	if err != nil {
		return err
	}
	for _, l := range logs {
		s.m.spendRows.WithLabelValues(l.CallType, l.Status).Inc()
		if l.Status != "success" {
			continue // a failed call may name any model; keep the label set bounded
		}
		if l.CallType == store.CallMCPTool {
			s.m.spend.WithLabelValues(l.CallType, "", l.MCPServer).Add(l.Spend)
			continue
		}
		s.m.spend.WithLabelValues(l.CallType, l.Model, "").Add(l.Spend)
		s.m.tokens.WithLabelValues(l.Model, "prompt").Add(float64(l.PromptTokens))
		s.m.tokens.WithLabelValues(l.Model, "completion").Add(float64(l.CompletionTokens))
	}
	return nil
}

// callHook counts tool calls around the hook that other work installs (budgets).
type callHook struct {
	m    *metrics
	next func() federation.CallHook // read per call so a hook installed later is used
}

var _ federation.CallHook = (*callHook)(nil)

func (h *callHook) BeforeToolCall(ctx context.Context, server, tool string) (func(*mcp.CallToolResult, error), error) {
	start := time.Now()
	h.m.calling.Add(1)
	var done func(*mcp.CallToolResult, error)
	if next := h.next(); next != nil {
		d, err := next.BeforeToolCall(ctx, server, tool)
		if err != nil {
			h.m.calling.Add(-1)
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
			done(res, err) // writes the spend row: before calling drops, so a drain waits for it
		}
		h.m.calling.Add(-1)
	}, nil
}
