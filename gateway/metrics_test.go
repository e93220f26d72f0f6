package gateway

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/store"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads /metrics with the master key.
func scrape(t testing.TB, g *testGateway) []sample {
	t.Helper()
	r := g.admin(t, "GET", "/metrics", nil)
	if r.status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	var out []sample
	for _, line := range strings.Split(string(r.body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[i+1:], "}"), ",") {
				k, v, _ := strings.Cut(kv, "=")
				s.labels[k] = strings.Trim(v, `"`)
			}
			s.name = s.name[:i]
		}
		out = append(out, s)
	}
	return out
}

// sum adds the samples named name whose labels include want ("k=v" pairs).
func sum(samples []sample, name string, want ...string) float64 {
	var total float64
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// TestMetricsMove scrapes /metrics before and after real traffic (MCP tool calls through
// /mcp, one refused by the key's budget, and an LLM completion through a fake provider) and
// checks that each counter moved by what that traffic should add.
func TestMetricsMove(t *testing.T) {
	up := fakeLLM(t)
	tools := newUpstream(t, "paid", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "gpt",
			"litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up, "api_key": "sk-upstream"},
			// 10 x 0.01 + 10 x 0.02 = 0.30 per call
			"model_info": map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02, "max_output_tokens": 20},
		}}
		c.MCPServers = []*store.MCPServer{{Name: "paid", URL: tools, AvailableOnPublicInternet: true, AllowAllKeys: true,
			Cost: store.MCPServerCost{DefaultCostPerQuery: 0.25}}}
	})
	// Budget 0.6: the chat (0.30) and one tool call (0.25) fit, a second tool call does not.
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "metrics", "max_budget": 0.6}), 200)
	key := k["key"].(string)
	auth := []string{"Authorization", "Bearer " + key}
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})

	before := scrape(t, g)
	delta := func(after []sample, name string, labels ...string) float64 {
		return sum(after, name, labels...) - sum(before, name, labels...)
	}

	chat := map[string]any{"model": "gpt", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	if r := g.do(t, "POST", "/v1/chat/completions", chat, auth...); r.status != 200 {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	c := dialMCP(t, g.url+"/mcp", true, map[string]string{"Authorization": "Bearer " + key})
	toolNamesOf(t, c)
	toolNamesOf(t, c)
	if got := callText(t, c, "paid-echo", "hi"); got != "paid/echo: hi" {
		t.Fatalf("tool call: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "paid-echo"
	if res, err := c.CallTool(ctx, req); err == nil && !res.IsError {
		t.Fatalf("second tool call over budget succeeded: %+v", res)
	}

	var after []sample
	waitFor(t, "spend rows written", func() bool {
		after = scrape(t, g)
		return delta(after, "toolgate_spend_log_rows_total") >= 2
	})
	if got := sum(after, "toolgate_mcp_sessions"); got != 1 {
		t.Errorf("toolgate_mcp_sessions with one client: got %v, want 1", got)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"toolgate_mcp_tool_calls_total", []string{"server=paid", "tool=echo", "outcome=success"}, 1},
		{"toolgate_mcp_tool_calls_total", []string{"server=paid", "tool=echo", "outcome=refused"}, 1},
		{"toolgate_mcp_tool_call_duration_seconds_count", []string{"server=paid"}, 1},
		{"toolgate_budget_rejections_total", []string{"scope=key"}, 1},
		{"toolgate_spend_usd_total", []string{"call_type=mcp_tool_call", "mcp_server=paid"}, 0.25},
		{"toolgate_spend_usd_total", []string{"call_type=completion", "model=gpt"}, 0.30},
		{"toolgate_llm_tokens_total", []string{"model=gpt", "type=prompt"}, 10},
		{"toolgate_llm_tokens_total", []string{"model=gpt", "type=completion"}, 10},
		{"toolgate_spend_log_rows_total", []string{"call_type=mcp_tool_call", "status=success"}, 1},
		{"toolgate_spend_log_rows_total", []string{"call_type=completion", "status=success"}, 1},
		{"toolgate_http_requests_total", []string{"route=/v1/chat/completions", "status=200"}, 1},
	}
	for _, tc := range checks {
		if got := delta(after, tc.name, tc.labels...); !near(got, tc.want) {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The key was looked up once and then served from the cache; the second tools/list
	// was served from the list cache.
	for _, l := range [][]string{{"cache=key", "result=miss"}, {"cache=key", "result=hit"}, {"cache=mcp_list", "result=hit"}} {
		if got := delta(after, "toolgate_cache_lookups_total", l...); got < 1 {
			t.Errorf("toolgate_cache_lookups_total%v moved by %v, want at least 1", l, got)
		}
	}
	if got := sum(after, "toolgate_upstream_healthy", "server=paid"); got != 1 {
		t.Errorf("toolgate_upstream_healthy{server=paid} = %v, want 1", got)
	}

	// mcp-go's client sends its closing DELETE without the configured headers, so end the
	// session as a client holding its key would.
	if r := g.do(t, "DELETE", "/mcp", nil, "Authorization", "Bearer "+key, "Mcp-Session-Id", c.GetSessionId(),
		"Mcp-Protocol-Version", mcp.ProtocolVersion20251125); r.status != 200 {
		t.Fatalf("DELETE session: %d %s", r.status, r.body)
	}
	waitFor(t, "session gauge back to 0", func() bool { return sum(scrape(t, g), "toolgate_mcp_sessions") == 0 })
}

// TestReadinessDetailsCache: the authenticated readiness details say where rate-limit
// counters live and how many keys the admission cache holds.
func TestReadinessDetailsCache(t *testing.T) {
	g := newTestGateway(t, nil)
	if r := g.do(t, "GET", "/health/readiness/details", nil); r.status != 401 {
		t.Errorf("details without a key: %d, want 401", r.status)
	}
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "details"}), 200)
	r := g.do(t, "GET", "/health/readiness/details", nil, "Authorization", "Bearer "+k["key"].(string))
	if r.status != 200 {
		t.Fatalf("details: %d %s", r.status, r.body)
	}
	cache, _ := r.json(t)["cache"].(map[string]any)
	if cache["rate_limit_counters"] != "local" || cache["cached_keys"] != float64(1) {
		t.Errorf("details cache: got %v, want local counters and 1 cached key", cache)
	}
}
