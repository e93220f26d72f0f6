package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/store"
)

// fakeLLM is an OpenAI-compatible upstream answering every completion with 10 prompt and
// 10 completion tokens.
func fakeLLM(t testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":10,"total_tokens":20}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestLLMEndToEnd: a model from the config, called through a virtual key with a budget;
// the spend shows on the key, the budget refuses with budget_exceeded, and the same key's
// MCP tool calls draw from the same budget.
func TestLLMEndToEnd(t *testing.T) {
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
	t.Cleanup(func() { g.s.llmClose() })
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "llm", "max_budget": 1.2}), 200)
	key := k["key"].(string)
	auth := []string{"Authorization", "Bearer " + key}

	r := g.do(t, "GET", "/v1/models", nil, auth...)
	if r.status != 200 || !strings.Contains(string(r.body), `"id":"gpt"`) {
		t.Fatalf("models: %d %s", r.status, r.body)
	}
	chat := map[string]any{"model": "gpt", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	r = g.do(t, "POST", "/v1/chat/completions", chat, auth...)
	if r.status != 200 {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	info := g.do(t, "GET", "/key/info?key="+key, nil, auth...)
	if info.status != 200 || !strings.Contains(string(info.body), `"spend":0.3`) {
		t.Errorf("key info after one call: %d %s", info.status, info.body)
	}

	// An MCP tool call is charged 0.25 to the same key.
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})
	c := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key})
	if got := callText(t, c, "paid-echo", "hi"); got != "paid/echo: hi" {
		t.Fatalf("tool call: %q", got)
	}
	// spend 0.55; another chat reserves 0.51 (11 prompt tokens estimated, 20 output) and spends 0.30: 0.85; a third does not fit.
	if r := g.do(t, "POST", "/chat/completions", chat, auth...); r.status != 200 {
		t.Fatalf("second chat: %d %s", r.status, r.body)
	}
	r = g.do(t, "POST", "/v1/chat/completions", chat, auth...)
	if r.status != 400 || r.errorField(t, "type") != "budget_exceeded" || !strings.Contains(r.errorField(t, "message"), "Key=") {
		t.Fatalf("over budget: %d %s", r.status, r.body)
	}
	b, err := g.db.Budget(context.Background(), store.BudgetRef{Scope: store.BudgetKey, ID: keyIDOf(t, g, key)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spend < 0.85-1e-9 || b.Spend > 0.85+1e-9 || b.Reserved != 0 {
		t.Errorf("key budget spend %v reserved %v, want 0.85 and 0", b.Spend, b.Reserved)
	}
	// Refused body fields.
	bad := map[string]any{"model": "gpt", "messages": chat["messages"], "metadata": map[string]any{"api_base": "https://evil.example"}}
	if r := g.do(t, "POST", "/v1/chat/completions", bad, auth...); r.status != 400 || r.errorField(t, "param") != "metadata.api_base" {
		t.Errorf("hygiene: %d %s", r.status, r.body)
	}
	// Model management is admin-only.
	if r := g.do(t, "POST", "/model/new", map[string]any{"model_name": "x", "litellm_params": map[string]any{"model": "openai/x"}}, auth...); r.status != 403 && r.status != 401 {
		t.Errorf("non-admin /model/new: %d %s", r.status, r.body)
	}
	r = g.admin(t, "POST", "/model/new", map[string]any{"model_name": "db-model", "litellm_params": map[string]any{"model": "openai/x", "api_base": up, "api_key": "sk-secret"}})
	if r.status != 200 {
		t.Fatalf("/model/new: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "sk-secret") {
		t.Errorf("/model/new echoed the api key: %s", r.body)
	}
	ms, _ := g.db.Models(context.Background())
	if len(ms) != 1 || strings.Contains(string(ms[0].Params), "sk-secret") || strings.Contains(string(ms[0].Credentials), "sk-secret") {
		t.Errorf("stored model leaks its key: %+v", ms)
	}
	if r := g.admin(t, "GET", "/model/info", nil); r.status != 200 || !strings.Contains(string(r.body), "db-model") || strings.Contains(string(r.body), "sk-secret") {
		t.Errorf("/model/info: %d %s", r.status, r.body)
	}
	// Spend logs: the key sees its own rows (two chats and one tool call).
	if err := g.s.llmClose(); err != nil { // flush the spend log
		t.Fatal(err)
	}
	logs, err := g.db.SpendLogs(context.Background(), store.SpendFilter{KeyID: keyIDOf(t, g, key)})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, l := range logs {
		kinds[l.CallType]++
	}
	if kinds[store.CallCompletion] != 2 || kinds[store.CallMCPTool] != 1 {
		t.Errorf("spend log kinds %v", kinds)
	}
}

func keyIDOf(t testing.TB, g *testGateway, key string) string {
	t.Helper()
	ks, err := g.db.Keys(context.Background(), store.KeyFilter{KeyAlias: "llm"})
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys: %v %v", ks, err)
	}
	return ks[0].ID
}

func TestCallerFor(t *testing.T) {
	rpm := int64(10)
	par := int64(2)
	p := &Principal{Kind: KindKey, Key: &store.Key{ID: "k", TokenHash: "h", KeyAlias: "a", UserID: "u", TeamID: "t",
		Models: []string{"gpt"}, Tags: []string{"x"}, Limits: store.Limits{RPMLimit: &rpm}},
		User: &store.User{ID: "u", Limits: store.Limits{MaxParallelRequests: &par}},
		Team: &store.Team{ID: "t", OrgID: "o", Models: []string{"gpt", "claude"}, Metadata: map[string]any{"tags": []any{"team-tag"}}}}
	c := callerFor(p)
	want := []store.BudgetRef{{Scope: store.BudgetKey, ID: "k"}, {Scope: store.BudgetTeam, ID: "t"},
		{Scope: store.BudgetTeamMember, ID: "t/u"}, {Scope: store.BudgetOrg, ID: "o"}}
	if fmt.Sprint(c.Budgets) != fmt.Sprint(want) {
		t.Errorf("budgets %v, want %v (a team key is charged to the team, not the user)", c.Budgets, want)
	}
	if len(c.Limits) != 2 || c.Limits[0].RPM != 10 || c.Limits[1].MaxParallel != 2 {
		t.Errorf("limits %+v", c.Limits)
	}
	if !c.MayUse("gpt") || c.MayUse("claude") || c.KeyHash != "h" || c.OrgID != "o" || fmt.Sprint(c.Tags) != "[x team-tag]" {
		t.Errorf("caller %+v", c)
	}
	solo := callerFor(&Principal{Kind: KindKey, Key: &store.Key{ID: "k2", UserID: "u2"}})
	if fmt.Sprint(solo.Budgets) != fmt.Sprint([]store.BudgetRef{{Scope: store.BudgetKey, ID: "k2"}, {Scope: store.BudgetUser, ID: "u2"}}) {
		t.Errorf("personal key budgets %v", solo.Budgets)
	}
	if callerFor(nil) != nil || callerFor(&Principal{Kind: KindAnonymous}) != nil {
		t.Error("anonymous caller")
	}
	if m := callerFor(&Principal{Kind: KindMaster, Admin: true}); !m.Admin || len(m.Budgets) != 0 {
		t.Errorf("master %+v", m)
	}
}

func TestToolCallOverBudget(t *testing.T) {
	tools := newUpstream(t, "pricey", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "pricey", URL: tools, AvailableOnPublicInternet: true, AllowAllKeys: true,
			Cost: store.MCPServerCost{DefaultCostPerQuery: 1, ToolNameToCostPerQuery: map[string]float64{"echo": 0.4}}}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "tools", "max_budget": 1.0}), 200)
	key := k["key"].(string)
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})
	c := dialMCP(t, g.url+"/mcp", false, map[string]string{"Authorization": "Bearer " + key})
	for range 2 {
		if got := callText(t, c, "pricey-echo", "hi"); got != "pricey/echo: hi" {
			t.Fatalf("tool call: %q", got)
		}
	}
	// 0.8 spent: a third call at 0.4 does not fit.
	if msg := callRefused(t, c, "pricey-echo"); !strings.Contains(msg, "Budget has been exceeded") {
		t.Errorf("third call: %q", msg)
	}
	b, err := g.db.Budget(context.Background(), store.BudgetRef{Scope: store.BudgetKey, ID: keyIDOfAlias(t, g, "tools")})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spend < 0.8-1e-9 || b.Spend > 0.8+1e-9 || b.Reserved != 0 {
		t.Errorf("spend %v reserved %v, want 0.8 and 0", b.Spend, b.Reserved)
	}
}

// waitKeySpend waits until the key named alias has spent want.
func waitKeySpend(t testing.TB, g *testGateway, alias string, want float64) {
	t.Helper()
	id := keyIDOfAlias(t, g, alias)
	waitFor(t, fmt.Sprintf("key %s to spend %v", alias, want), func() bool {
		b, err := g.db.Budget(context.Background(), store.BudgetRef{Scope: store.BudgetKey, ID: id})
		return err == nil && math.Abs(b.Spend-want) < 1e-9
	})
}

func keyIDOfAlias(t testing.TB, g *testGateway, alias string) string {
	t.Helper()
	ks, err := g.db.Keys(context.Background(), store.KeyFilter{KeyAlias: alias})
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys: %v %v", ks, err)
	}
	return ks[0].ID
}

// TestToolCallRateLimitHeaders: a REST tool call refused by the key's rpm_limit answers 429
// with Retry-After and the x-ratelimit-* headers, as the LLM routes do, so a client's
// backoff works the same on tools and models.
func TestToolCallRateLimitHeaders(t *testing.T) {
	tools := newUpstream(t, "pricey", "echo")
	// A fixed clock 20s into a minute: the rpm window cannot roll over between the calls,
	// and the refusal says to retry after the 40s left in it.
	now := time.Date(2026, 12, 6, 12, 0, 20, 0, time.UTC)
	g := newTestGateway(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.MCPServers = []*store.MCPServer{{Name: "pricey", URL: tools, AvailableOnPublicInternet: true, AllowAllKeys: true}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	k := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "limited", "rpm_limit": 1}), 200)
	key := k["key"].(string)
	waitFor(t, "upstream healthy", func() bool {
		r := g.admin(t, "GET", "/v1/mcp/server/health", nil)
		return strings.Contains(string(r.body), `"status":"healthy"`)
	})
	call := map[string]any{"name": "pricey-echo", "arguments": map[string]any{"message": "hi"}}
	if r := g.as(t, key, "POST", "/mcp-rest/tools/call", call); r.status != 200 {
		t.Fatalf("first call: %d %s", r.status, r.body)
	}
	r := g.as(t, key, "POST", "/mcp-rest/tools/call", call)
	if r.status != 429 || r.errorField(t, "type") != "rate_limit_error" {
		t.Fatalf("second call: %d %s, want 429 rate_limit_error", r.status, r.body)
	}
	for name, want := range map[string]string{
		"Retry-After":                    "40",
		"X-Ratelimit-Limit-Requests":     "1",
		"X-Ratelimit-Remaining-Requests": "0",
		"X-Ratelimit-Reset-Requests":     "40s",
		"Content-Type":                   "application/json",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}

	// Over /mcp the refusal is a JSON-RPC error in a 200; its response carries the same
	// headers.
	c := dialMCP(t, g.url+"/mcp", true, map[string]string{"Authorization": "Bearer " + key})
	r = g.do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call},
		"Authorization", "Bearer "+key, "Mcp-Session-Id", c.GetSessionId(), "Mcp-Protocol-Version", mcp.ProtocolVersion20251125,
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if r.status != 200 || !strings.Contains(string(r.body), `"error"`) || !strings.Contains(string(r.body), "Rate limit") {
		t.Fatalf("/mcp tools/call over the limit: %d %s, want a JSON-RPC error naming the limit", r.status, r.body)
	}
	for name, want := range map[string]string{"Retry-After": "40", "X-Ratelimit-Remaining-Requests": "0"} {
		if got := r.header.Get(name); got != want {
			t.Errorf("/mcp %s: got %q, want %q", name, got, want)
		}
	}
}

// TestSpendBatchWindow: with budget leases (proxy_batch_write_at) /key/info and
// /team/info still show every finished call of this replica at once (they settle its
// leases before reading), and with the window off spend is written by each call.
func TestSpendBatchWindow(t *testing.T) {
	up := fakeLLM(t)
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"off", -1}, {"an hour", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGateway(t, func(c *Config) {
				c.SpendBatchWindow = tc.window
				c.ModelList = []map[string]any{{
					"model_name":     "gpt",
					"litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up, "api_key": "sk-upstream"},
					"model_info":     map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02}, // 0.30 a call
				}}
			})
			t.Cleanup(func() { g.s.llmClose() })
			must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "window"}), 200)
			key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "w", "team_id": "window"}), 200)["key"].(string)
			chat := map[string]any{"model": "gpt", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
			const calls = 20
			for range calls {
				if r := g.as(t, key, "POST", "/v1/chat/completions", chat); r.status != 200 {
					t.Fatalf("chat: %d %s", r.status, r.body)
				}
			}
			var info struct {
				Info struct {
					Spend float64 `json:"spend"`
				} `json:"info"`
			}
			r := g.as(t, key, "GET", "/key/info", nil)
			if err := json.Unmarshal(r.body, &info); err != nil || r.status != 200 {
				t.Fatalf("/key/info: %d %s", r.status, r.body)
			}
			want := calls * 0.30
			if math.Abs(info.Info.Spend-want) > 1e-9 {
				t.Errorf("key spend right after the calls: %v, want %v", info.Info.Spend, want)
			}
			var team struct {
				Info struct {
					Spend float64 `json:"spend"`
				} `json:"team_info"`
			}
			r = g.admin(t, "GET", "/team/info?team_id=window", nil)
			if err := json.Unmarshal(r.body, &team); err != nil || r.status != 200 {
				t.Fatalf("/team/info: %d %s", r.status, r.body)
			}
			if math.Abs(team.Info.Spend-want) > 1e-9 {
				t.Errorf("team spend right after the calls: %v, want %v", team.Info.Spend, want)
			}
		})
	}
}

// TestImageEditsThroughGateway: a virtual key (not an admin) sends a multipart image edit,
// the way OpenAI's SDKs send files, and is charged per image.
func TestImageEditsThroughGateway(t *testing.T) {
	up := fakeLLM(t)
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "edit",
			"litellm_params": map[string]any{"model": "openai/gpt-image-x", "api_base": up, "api_key": "sk-upstream"},
			"model_info":     map[string]any{"mode": "image_edit", "output_cost_per_image": 0.25},
		}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "edits", "max_budget": 1}), 200)["key"].(string)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("model", "edit")
	_ = mw.WriteField("prompt", "add a hat")
	_ = mw.WriteField("n", "2")
	fw, _ := mw.CreateFormFile("image", "cat.png")
	_, _ = fw.Write([]byte("\x89PNG"))
	_ = mw.Close()
	r := g.do(t, "POST", "/v1/images/edits", buf.String(), "Authorization", "Bearer "+key, "Content-Type", mw.FormDataContentType())
	if r.status != 200 {
		t.Fatalf("image edit with a virtual key: %d %s", r.status, r.body)
	}
	b, err := g.db.Budget(context.Background(), store.BudgetRef{Scope: store.BudgetKey, ID: keyIDOfAlias(t, g, "edits")})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spend < 0.5-1e-9 || b.Spend > 0.5+1e-9 {
		t.Errorf("key spend %v, want 2 images x 0.25", b.Spend)
	}
}

// TestMessagesThroughGateway: Anthropic clients (Claude Code with ANTHROPIC_BASE_URL, the
// Anthropic SDKs) send their key in x-api-key; on /v1/messages a virtual key there is
// accepted and charged, and it never reaches the provider. Elsewhere x-api-key is not a
// gateway credential.
func TestMessagesThroughGateway(t *testing.T) {
	var gotKey string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey = r.Header.Get("x-api-key")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5}}`)
	}))
	defer up.Close()
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "claude",
			"litellm_params": map[string]any{"model": "anthropic/claude-x", "api_base": up.URL, "api_key": "sk-ant-upstream"},
			"model_info":     map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02},
		}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "anthropic-client", "max_budget": 10}), 200)["key"].(string)
	body := `{"model":"claude","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	r := g.do(t, "POST", "/v1/messages", body, "x-api-key", key, "anthropic-version", "2023-06-01", "Content-Type", "application/json")
	if r.status != 200 {
		t.Fatalf("/v1/messages with x-api-key: %d %s", r.status, r.body)
	}
	if gotKey != "sk-ant-upstream" {
		t.Errorf("provider got x-api-key %q, want the deployment's", gotKey)
	}
	waitKeySpend(t, g, "anthropic-client", 0.2) // 10×0.01 + 5×0.02
	if r := g.do(t, "POST", "/v1/messages/count_tokens", body, "x-api-key", key, "Content-Type", "application/json"); r.status != 200 {
		t.Errorf("/v1/messages/count_tokens with x-api-key: %d %s", r.status, r.body)
	}
	if r := g.do(t, "POST", "/v1/messages", body, "x-api-key", "sk-not-a-key", "Content-Type", "application/json"); r.status != 401 {
		t.Errorf("/v1/messages with a wrong x-api-key: %d %s, want 401", r.status, r.body)
	}
	chat := `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`
	if r := g.do(t, "POST", "/v1/chat/completions", chat, "x-api-key", key, "Content-Type", "application/json"); r.status != 401 {
		t.Errorf("/v1/chat/completions with only x-api-key: %d %s, want 401", r.status, r.body)
	}
}

// TestResponsesThroughGateway: a virtual key (not an admin) can call OpenAI's Responses API;
// its reservation counts max_output_tokens (without it, the 16,384-token allowance would
// not fit this key's budget), and the call is charged to the key.
func TestResponsesThroughGateway(t *testing.T) {
	var gotPath, gotAuth string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":10,"output_tokens":5,"total_tokens":15}}`)
	}))
	defer up.Close()
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "gpt",
			"litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-upstream"},
			"model_info":     map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02},
		}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "responses-client", "max_budget": 10}), 200)["key"].(string)
	r := g.do(t, "POST", "/v1/responses", `{"model":"gpt","input":"hi","max_output_tokens":50}`, "Authorization", "Bearer "+key, "Content-Type", "application/json")
	if r.status != 200 || gotPath != "/responses" || gotAuth != "Bearer sk-upstream" {
		t.Fatalf("/v1/responses: %d %s; provider got %s with %q", r.status, r.body, gotPath, gotAuth)
	}
	waitKeySpend(t, g, "responses-client", 0.2) // 10×0.01 + 5×0.02

	// The stored response is the key's: it reads it back, another key does not.
	id, _ := r.json(t)["id"].(string)
	if got := g.do(t, "GET", "/v1/responses/"+id, "", "Authorization", "Bearer "+key); got.status != 200 || gotPath != "/responses/resp_1" {
		t.Errorf("GET own response: %d %s; provider got %s", got.status, got.body, gotPath)
	}
	other := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "other"}), 200)["key"].(string)
	if got := g.do(t, "GET", "/v1/responses/"+id, "", "Authorization", "Bearer "+other); got.status != 404 {
		t.Errorf("GET another key's response: %d %s, want 404", got.status, got.body)
	}
}

// TestUnknownRouterSettingsWarned: router_settings keys toolgate does not implement (from
// LiteLLM configs, or misspelled) are named in a warning at start, so that a setting that
// does nothing does not pass for one that works; keys it reads are not named.
func TestUnknownRouterSettingsWarned(t *testing.T) {
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{"model_name": "gpt", "litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": "http://127.0.0.1:9", "api_key": "k"}}}
		c.RouterSettings = map[string]any{"routing_strategy": "simple-shuffle", "context_window_fallbacks": []any{map[string]any{"gpt": []any{"gpt"}}},
			"redis_password": "x", "enable_pre_call_checks": true, "routing_strategy_args": map[string]any{"ttl": 60}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	var warned []string
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(line, "router_settings") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "enable_pre_call_checks") || !strings.Contains(warned[0], "routing_strategy_args") ||
		strings.Contains(warned[0], "redis_password") || strings.Contains(warned[0], "context_window_fallbacks") || strings.Contains(warned[0], `"routing_strategy"`) {
		t.Errorf("warnings: %q, want one naming enable_pre_call_checks and routing_strategy_args only", warned)
	}
}

// TestLiteLLMSettingsRouterKeys: fallbacks and num_retries under litellm_settings, where
// many LiteLLM configs keep them, work as under router_settings, which wins when both set
// a key.
func TestLiteLLMSettingsRouterKeys(t *testing.T) {
	var downCalls atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downCalls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error"}}`)
	}))
	defer down.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer good.Close()
	for _, tc := range []struct {
		name      string
		router    map[string]any
		wantCalls int64 // of the failing deployment: 1 + num_retries
		wantModel string
	}{
		{"litellm_settings alone", nil, 1, "good"},
		{"router_settings wins", map[string]any{"num_retries": 2, "retry_after": 0.001}, 3, "good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			downCalls.Store(0)
			g := newTestGateway(t, func(c *Config) {
				c.ModelList = []map[string]any{
					{"model_name": "down", "litellm_params": map[string]any{"model": "openai/x", "api_base": down.URL, "api_key": "k"}},
					{"model_name": "good", "litellm_params": map[string]any{"model": "openai/x", "api_base": good.URL, "api_key": "k"}, "model_info": map[string]any{"id": "good"}},
				}
				c.RouterSettings = tc.router
				c.LiteLLMSettings = map[string]any{"num_retries": 0, "fallbacks": []any{map[string]any{"down": []any{"good"}}}}
			})
			t.Cleanup(func() { g.s.llmClose() })
			r := g.do(t, "POST", "/v1/chat/completions", `{"model":"down","messages":[{"role":"user","content":"hi"}]}`,
				"Authorization", "Bearer "+testMasterKey, "Content-Type", "application/json")
			if r.status != 200 || r.header.Get("X-Litellm-Model-Id") != tc.wantModel || downCalls.Load() != tc.wantCalls {
				t.Errorf("%d from %q after %d calls to the failing model: %s; want 200 from %s after %d",
					r.status, r.header.Get("X-Litellm-Model-Id"), downCalls.Load(), r.body, tc.wantModel, tc.wantCalls)
			}
		})
	}
}

// TestTextCompletionsThroughGateway: a virtual key (not an admin) reaches /v1/completions
// and /completions, and the call is charged to it.
func TestTextCompletionsThroughGateway(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"text":"ok","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
	}))
	defer up.Close()
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{"model_name": "instruct", "litellm_params": map[string]any{"model": "openai/x", "api_base": up.URL, "api_key": "k"},
			"model_info": map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02}}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "completer", "max_budget": 10}), 200)["key"].(string)
	for _, p := range []string{"/v1/completions", "/completions"} {
		if r := g.do(t, "POST", p, `{"model":"instruct","prompt":"hi","max_tokens":5}`, "Authorization", "Bearer "+key, "Content-Type", "application/json"); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	waitKeySpend(t, g, "completer", 0.4) // twice 10×0.01 + 5×0.02
}

// capsGateway is a gateway with two models, "pricey" and "cheap", on one fake provider
// whose every answer costs 0.2 (10 prompt and 5 completion tokens), and router settings.
func capsGateway(t *testing.T, router map[string]any) *testGateway {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
	}))
	t.Cleanup(up.Close)
	price := map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02}
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{
			{"model_name": "pricey", "litellm_params": map[string]any{"model": "openai/x", "api_base": up.URL, "api_key": "k"}, "model_info": price},
			{"model_name": "cheap", "litellm_params": map[string]any{"model": "openai/y", "api_base": up.URL, "api_key": "k"}, "model_info": price},
		}
		c.RouterSettings = router
	})
	t.Cleanup(func() { g.s.llmClose() })
	return g
}

// chatAs sends a chat completion for model with key, asking for at most 5 tokens.
func chatAs(t *testing.T, g *testGateway, key, model string) response {
	return g.do(t, "POST", "/v1/chat/completions", `{"model":"`+model+`","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+key, "Content-Type", "application/json")
}

// TestModelMaxBudget: a key's cap on one model (model_max_budget, LiteLLM's shape) refuses
// that model's calls once spent, by its name or an alias of it, with budget_exceeded,
// while the key's other models go on; /key/info shows each cap's spend; /key/update moves
// a cap and keeps what was spent.
func TestModelMaxBudget(t *testing.T) {
	g := capsGateway(t, map[string]any{"model_group_alias": map[string]any{"old-name": "pricey"}})
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "capped", "max_budget": 10,
		"model_max_budget": map[string]any{"old-name": map[string]any{"budget_limit": "0.3", "time_period": "1d"}}}), 200)["key"].(string)
	call := func(model string) response { return chatAs(t, g, key, model) }
	if r := call("pricey"); r.status != 200 {
		t.Fatalf("first call within the cap: %d %s", r.status, r.body)
	}
	// The cap is on the alias, so on its model too. 0.2 spent: a call reserves more than the 0.1 left.
	for _, model := range []string{"pricey", "old-name"} {
		r := call(model)
		if r.status != 400 || r.errorField(t, "type") != "budget_exceeded" || !strings.Contains(r.errorField(t, "message"), "KeyModel=") {
			t.Errorf("%s past its cap: %d %s, want budget_exceeded naming the model's budget", model, r.status, r.body)
		}
	}
	if r := call("cheap"); r.status != 200 {
		t.Errorf("another model of the key: %d %s, want it to go on", r.status, r.body)
	}
	waitKeySpend(t, g, "capped", 0.4)
	info := must(t, g.admin(t, "GET", "/key/info?key="+key, nil), 200)["info"].(map[string]any)
	caps, _ := info["model_max_budget"].(map[string]any)
	spend, _ := info["model_spend"].(map[string]any)
	if c, _ := caps["old-name"].(map[string]any); c["budget_limit"] != 0.3 || c["time_period"] != "1d" || spend["old-name"] != 0.2 {
		t.Errorf("/key/info: model_max_budget %v model_spend %v, want old-name capped at 0.3 daily with 0.2 spent", caps, spend)
	}
	must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": key, "model_max_budget": map[string]any{"old-name": 1}}), 200)
	if r := call("pricey"); r.status != 200 {
		t.Errorf("after raising the cap: %d %s", r.status, r.body)
	}
	waitKeySpend(t, g, "capped", 0.6)
	spend, _ = must(t, g.admin(t, "GET", "/key/info?key="+key, nil), 200)["info"].(map[string]any)["model_spend"].(map[string]any)
	if math.Abs(spend["old-name"].(float64)-0.4) > 1e-9 {
		t.Errorf("model_spend after the update: %v, want the 0.2 spent before plus 0.2", spend)
	}

	// A "*" cap is one counter for every model it matches.
	must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": key, "model_max_budget": map[string]any{"*": 0.3}}), 200)
	if r := call("cheap"); r.status != 200 {
		t.Fatalf("first call under the * cap: %d %s", r.status, r.body)
	}
	if r := call("pricey"); r.status != 400 || r.errorField(t, "type") != "budget_exceeded" {
		t.Errorf("another model past the shared * cap: %d %s, want budget_exceeded", r.status, r.body)
	}
}

// TestServerNamedResponses: an MCP server named "responses" keeps its /responses/mcp route
// beside the Responses API's /responses/{id} subtree, and /mcp/responses too.
func TestServerNamedResponses(t *testing.T) {
	up := newUpstream(t, "responses", "echo")
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "responses", URL: up}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	for _, path := range []string{"/responses/mcp", "/mcp/responses"} {
		var names []string
		waitFor(t, "tools on "+path, func() bool {
			c := dialMCP(t, g.url+path, false, map[string]string{"Authorization": "Bearer " + testMasterKey})
			names = toolNamesOf(t, c)
			return len(names) == 1
		})
		if !strings.HasSuffix(names[0], "echo") {
			t.Errorf("%s: tools %v, want the server's echo", path, names)
		}
	}
	if r := g.do(t, "GET", "/responses/resp_x", "", "Authorization", "Bearer "+testMasterKey); r.status != 404 || r.errorField(t, "message") == "" {
		t.Errorf("/responses/{id} beside it: %d %s, want the Responses API's 404", r.status, r.body)
	}
}

// TestTeamModelMaxBudget: a team's cap on one model refuses that model for every key of
// the team once the team has spent it, while other models go on; /team/info shows it.
func TestTeamModelMaxBudget(t *testing.T) {
	g := capsGateway(t, nil)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "squad", "model_max_budget": map[string]any{"pricey": map[string]any{"budget_limit": 0.3}}}), 200)
	k1 := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"team_id": "squad"}), 200)["key"].(string)
	k2 := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"team_id": "squad"}), 200)["key"].(string)
	call := func(key, model string) response { return chatAs(t, g, key, model) }
	if r := call(k1, "pricey"); r.status != 200 {
		t.Fatalf("first key within the team's cap: %d %s", r.status, r.body)
	}
	if r := call(k2, "pricey"); r.status != 400 || !strings.Contains(r.errorField(t, "message"), "TeamModel=") {
		t.Errorf("second key past the team's cap: %d %s, want budget_exceeded naming the team's model budget", r.status, r.body)
	}
	if r := call(k2, "cheap"); r.status != 200 {
		t.Errorf("another model: %d %s", r.status, r.body)
	}
	info := must(t, g.admin(t, "GET", "/team/info?team_id=squad", nil), 200)["team_info"].(map[string]any)
	caps, _ := info["model_max_budget"].(map[string]any)
	spend, _ := info["model_spend"].(map[string]any)
	if c, _ := caps["pricey"].(map[string]any); c["budget_limit"] != 0.3 || spend["pricey"] != 0.2 {
		t.Errorf("/team/info: model_max_budget %v model_spend %v, want pricey capped at 0.3 with 0.2 spent", caps, spend)
	}
	if r := g.do(t, "POST", "/user/new", `{"user_id":"u","model_max_budget":{"pricey":1}}`, "Authorization", "Bearer "+testMasterKey, "Content-Type", "application/json"); r.status != 400 {
		t.Errorf("model_max_budget on a user: %d %s, want 400 (keys and teams only)", r.status, r.body)
	}
}
