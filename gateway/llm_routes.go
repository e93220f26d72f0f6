package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// llmRuntime is the LLM side of one Server: the llm handler, the budget core and the
// spend log. Server has no field for it (it is the gateway's file), so it is kept here,
// keyed by server, and found again by llmClose.
type llmRuntime struct {
	srv     *llm.Server
	budget  *budget.Manager
	spend   *budget.SpendLog
	limiter budget.Limiter
	start   sync.Once
}

var llmRuntimes sync.Map // *Server -> *llmRuntime

// llmRoutes registers the LLM completion, model management and spend log routes and
// installs the budget hook around MCP tool calls. Configuration (from the config file):
//
//	model_list: [...]                      # LiteLLM's shape; see llm.ModelConfig
//	router_settings:                       # see llm.RouterSettings
//	  routing_strategy: simple-shuffle     # least-busy, latency-based-routing
//	  num_retries: 2
//	  timeout: 600
//	  fallbacks: [{gpt-4o: [gpt-4o-mini]}]
//	  context_window_fallbacks: [{gpt-4o-mini: [gpt-4.1]}]
//	  cooldown_time: 5
//	  allowed_fails: 3
//	  redis_url: redis://127.0.0.1:6379/0  # shared rate-limit counters (or redis_host/redis_port/redis_password)
//	litellm_settings:                      # num_retries, request_timeout and the fallbacks here
//	                                       # count where router_settings has none, as in LiteLLM
//	  budget_alert_webhook: https://...    # soft_budget crossings are POSTed here (cmd also
//	                                       # maps general_settings.alerting: [webhook] + WEBHOOK_URL here)
func (s *Server) llmRoutes(mux *http.ServeMux) {
	s.budgetRoutes(mux)
	rt, err := s.newLLMRuntime()
	if err != nil {
		// New cannot fail from here; refuse the LLM routes loudly instead.
		s.log.Error("LLM routes disabled: bad configuration", "err", err)
		for _, p := range slices.Concat(llm.Paths, llm.PathPrefixes) {
			mux.Handle(p, s.mcpBeside(s.handle(func(w http.ResponseWriter, r *http.Request) error {
				return &Error{Status: http.StatusServiceUnavailable, Message: "LLM routes are disabled: " + err.Error()}
			})))
		}
		return
	}
	llmRuntimes.Store(s, rt)
	for _, p := range llm.Paths {
		if !slices.Contains(llm.AdminPaths, p) { // admin ones fall to the admin class
			s.addRouteRule(p, false, classUser)
		}
	}
	for _, p := range llm.PathPrefixes {
		s.addRouteRule(strings.TrimSuffix(p, "/"), true, classUser)
	}
	s.addRouteRule("/responses/mcp", false, classMCP) // an MCP server named "responses"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerFor(PrincipalFrom(r.Context()))
		if c == nil {
			s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Message: "authentication required"})
			return
		}
		rt.srv.ServeHTTP(w, r.WithContext(llm.WithCaller(r.Context(), c)))
	})
	for _, p := range llm.Paths {
		mux.Handle(p, h)
	}
	for _, p := range llm.PathPrefixes {
		mux.Handle(p, s.mcpBeside(h))
	}
	// Start the background work with the gateway: Start reloads the registry once.
	s.onReload = append(s.onReload, func([]*store.MCPServer) {
		rt.start.Do(func() {
			rt.budget.Start()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := rt.srv.Start(ctx); err != nil {
				s.log.Error("load LLM models", "err", err)
			}
		})
	})
	if s.toolHook == nil {
		s.toolHook = &toolBudget{s: s, rt: rt}
	} else {
		s.log.Warn("a tool-call hook is already installed; MCP tool calls are not charged to budgets")
	}
}

// llmClose flushes the spend log and stops the LLM background work. Server.Close should
// call it.
func (s *Server) llmClose() error {
	v, ok := llmRuntimes.LoadAndDelete(s)
	if !ok {
		return nil
	}
	rt := v.(*llmRuntime)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := []error{rt.srv.Close(), rt.budget.Close(), rt.spend.Close(ctx)}
	if c, ok := rt.limiter.(interface{ Close() error }); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) newLLMRuntime() (*llmRuntime, error) {
	rt := &llmRuntime{}
	models, err := llm.ModelConfigsFromMaps(s.cfg.ModelList)
	if err != nil {
		return nil, err
	}
	rs, err := llm.RouterSettingsFromMap(MergedRouterSettings(s.cfg.RouterSettings, s.cfg.LiteLLMSettings))
	if err != nil {
		return nil, err
	}
	if unknown := llm.UnknownRouterSettings(s.cfg.RouterSettings, redisKeys...); len(unknown) > 0 {
		s.log.Warn("router_settings: toolgate does not implement these keys; they have no effect", "keys", unknown)
	}
	if url := redisURL(s.cfg.RouterSettings, s.cfg.LiteLLMSettings); url != "" {
		rl, err := budget.NewRedisLimiter(url, "")
		if err != nil {
			return nil, err
		}
		rt.limiter = rl
	} else {
		rt.limiter = budget.NewMemoryLimiter(s.now)
	}
	alert, _ := s.cfg.LiteLLMSettings["budget_alert_webhook"].(string)
	lease := s.cfg.SpendBatchWindow
	if lease == 0 {
		lease = time.Second
	}
	rt.budget, err = budget.New(budget.Config{Store: s.store, Logger: s.log.With("component", "budget"), AlertURL: alert,
		LeaseFor: max(lease, 0),
		OnExceeded: func(e *budget.ExceededError) {
			s.metrics.rejections.WithLabelValues(string(e.Scope)).Inc()
		}})
	if err != nil {
		return nil, err
	}
	rt.spend, err = budget.NewSpendLog(budget.SpendLogConfig{Store: s.store, Logger: s.log.With("component", "spendlog")})
	if err != nil {
		return nil, err
	}
	cfg := llm.Config{Models: models, Router: rs, Budget: rt.budget, Limiter: rt.limiter, SpendLog: rt.spend,
		SpendReader: s.store, Logger: s.log.With("component", "llm"), MaxBodyBytes: s.cfg.MaxBodyBytes, Now: s.now,
		TracerProvider: s.cfg.TracerProvider, ResponseIDKey: derivedKey(s.cfg, "toolgate response id key v1")}
	if s.box != nil {
		cfg.ModelStore, cfg.Sealer = s.store, s.box
	}
	rt.srv, err = llm.New(cfg)
	if err != nil {
		_ = rt.spend.Close(context.Background())
		return nil, err
	}
	return rt, nil
}

// litellmRouterKeys are the router settings LiteLLM also takes from litellm_settings
// (its module settings), with the router_settings key each becomes.
var litellmRouterKeys = map[string]string{"num_retries": "num_retries", "request_timeout": "timeout",
	"fallbacks": "fallbacks", "context_window_fallbacks": "context_window_fallbacks",
	"content_policy_fallbacks": "content_policy_fallbacks", "default_fallbacks": "default_fallbacks",
	"allowed_fails": "allowed_fails", "cooldown_time": "cooldown_time"}

// MergedRouterSettings is router_settings with the router settings of litellm_settings
// added where router_settings has none, as LiteLLM reads both: what the LLM routes use.
func MergedRouterSettings(router, litellm map[string]any) map[string]any {
	out := maps.Clone(router)
	for from, to := range litellmRouterKeys {
		if v, ok := litellm[from]; ok {
			if _, set := out[to]; !set {
				if out == nil {
					out = map[string]any{}
				}
				out[to] = v
			}
		}
	}
	return out
}

// mcpBeside serves a /{name}/mcp path under an LLM route subtree ("/responses/mcp", an MCP
// server named "responses") as the MCP route it also is, and everything else with h.
func (s *Server) mcpBeside(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ownServerRoute(strings.TrimSuffix(r.URL.Path, "/")); ok {
			s.fallback(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// redisKeys are the router_settings keys redisURL reads.
var redisKeys = []string{"redis_url", "redis_host", "redis_port", "redis_password"}

// redisURL reads redis_url (or redis_host, redis_port, redis_password) from
// router_settings, then litellm_settings.
func redisURL(sections ...map[string]any) string {
	for _, m := range sections {
		if u, _ := m["redis_url"].(string); u != "" {
			return u
		}
		if h, _ := m["redis_host"].(string); h != "" {
			port := fmt.Sprint(m["redis_port"])
			if port == "" || port == "<nil>" {
				port = "6379"
			}
			if pw, _ := m["redis_password"].(string); pw != "" {
				return "redis://:" + pw + "@" + h + ":" + port + "/0"
			}
			return "redis://" + h + ":" + port + "/0"
		}
	}
	return ""
}

// callerFor translates a principal to the llm caller: which models it may use, which
// budgets and rate limits apply. A key in a team is charged to the team (and its team
// member budget) rather than to the user's personal budget, as in LiteLLM.
func callerFor(p *Principal) *llm.Caller {
	if p == nil || p.Kind == KindAnonymous {
		return nil
	}
	c := &llm.Caller{Admin: p.Admin}
	var rules []budget.Rule
	addRule := func(scope store.BudgetScope, id string, l store.Limits) {
		if r, ok := budget.RuleFor(scope, id, l); ok {
			rules = append(rules, r)
		}
	}
	if k := p.Key; k != nil {
		c.KeyID, c.KeyHash, c.KeyAlias = k.ID, k.TokenHash, k.KeyAlias
		c.UserID, c.TeamID, c.OrgID = k.UserID, k.TeamID, k.OrgID
		c.Models = k.Models
		c.AllowClientSideCredentials = k.AllowClientSideCredentials
		c.Tags = append(append([]string(nil), k.Tags...), metadataTags(k.Metadata)...)
		c.Budgets = append(c.Budgets, store.BudgetRef{Scope: store.BudgetKey, ID: k.ID})
		for model := range k.Limits.ModelMaxBudget {
			c.ModelBudgets = append(c.ModelBudgets, model)
		}
		addRule(store.BudgetKey, k.ID, k.Limits)
	}
	if u := p.User; u != nil {
		if c.UserID == "" {
			c.UserID = u.ID
		}
		if c.OrgID == "" {
			c.OrgID = u.OrgID
		}
		if p.Key == nil {
			c.Models = u.Models
		}
		addRule(store.BudgetUser, u.ID, u.Limits)
	}
	if t := p.Team; t != nil {
		c.TeamID = t.ID
		if c.OrgID == "" {
			c.OrgID = t.OrgID
		}
		c.TeamModels = t.Models
		for model := range t.Limits.ModelMaxBudget {
			c.TeamModelBudgets = append(c.TeamModelBudgets, model)
		}
		c.Tags = append(c.Tags, metadataTags(t.Metadata)...)
		addRule(store.BudgetTeam, t.ID, t.Limits)
	}
	if o := p.Org; o != nil && c.OrgID == "" {
		c.OrgID = o.ID
	}
	switch {
	case c.TeamID != "":
		c.Budgets = append(c.Budgets, store.BudgetRef{Scope: store.BudgetTeam, ID: c.TeamID})
		if c.UserID != "" {
			c.Budgets = append(c.Budgets, store.BudgetRef{Scope: store.BudgetTeamMember, ID: c.TeamID + "/" + c.UserID})
		}
	case c.UserID != "":
		c.Budgets = append(c.Budgets, store.BudgetRef{Scope: store.BudgetUser, ID: c.UserID})
	}
	if c.OrgID != "" {
		c.Budgets = append(c.Budgets, store.BudgetRef{Scope: store.BudgetOrg, ID: c.OrgID})
	}
	c.Limits = rules
	return c
}

// metadataTags returns metadata["tags"] when it is a list of strings (LiteLLM keeps key
// and team tags there).
func metadataTags(md map[string]any) []string {
	var out []string
	switch v := md["tags"].(type) {
	case []string:
		out = append(out, v...)
	case []any:
		for _, t := range v {
			if s, ok := t.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// settleWait bounds how long an info route waits for this replica's budget leases to
// settle before it reads spend.
const settleWait = 250 * time.Millisecond

// settleSpend makes this replica's budget leases on refs reach the store, so that an info
// route reading spend next shows the calls this replica has finished (other replicas'
// leases settle within proxy_batch_write_at). It reports whether there was anything to
// settle.
func (s *Server) settleSpend(ctx context.Context, refs ...store.BudgetRef) bool {
	v, ok := llmRuntimes.Load(s)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, settleWait)
	defer cancel()
	settled, err := v.(*llmRuntime).budget.FlushBudgets(ctx, refs)
	if err != nil {
		s.log.Debug("info route read spend before its leases settled", "err", err)
	}
	return settled
}

// toolBudget charges MCP tool calls to the caller's budgets at the server's
// mcp_server_cost_info, through the same reserve/commit path as LLM calls, and logs them.
type toolBudget struct {
	s  *Server
	rt *llmRuntime
}

// toolRefusal maps a budget or rate-limit refusal to the gateway's error, so that
// /mcp-rest/tools/call answers in OpenAI's error shape (400 budget_exceeded, 429
// rate_limit_error with Retry-After and x-ratelimit-* headers) as the LLM routes do, and /mcp's
// JSON-RPC error carries the same message naming the budget or limit (and its HTTP response
// the same headers). Other errors pass through.
func toolRefusal(err error) error {
	var (
		be *budget.ExceededError
		le *budget.LimitError
	)
	switch {
	case errors.As(err, &be):
		return &Error{Status: http.StatusBadRequest, Type: "budget_exceeded", Message: be.Error()}
	case errors.As(err, &le):
		h := http.Header{}
		le.SetHeaders(h)
		return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Message: le.Error(), Header: h}
	}
	return err
}

func (h *toolBudget) BeforeToolCall(ctx context.Context, server, tool string) (func(*mcp.CallToolResult, error), error) {
	c := callerFor(PrincipalFrom(ctx))
	if c == nil {
		return nil, nil
	}
	var cost float64
	if reg := h.s.reg.Load(); reg != nil {
		srv := reg.byName[server]
		if srv == nil {
			srv = reg.byID[server]
		}
		if srv != nil {
			cost = budget.ToolCost(srv.Cost, tool)
		}
	}
	adm, err := h.rt.limiter.Admit(ctx, c.Limits)
	if err != nil {
		err = toolRefusal(err)
		var e *Error
		if errors.As(err, &e) && e.Header != nil {
			addResponseHeaders(ctx, e.Header) // /mcp answers 200 with a JSON-RPC error
		}
		return nil, err
	}
	res, err := h.rt.budget.Reserve(ctx, c.Budgets, cost)
	if err != nil {
		adm.Done(0)
		return nil, toolRefusal(err)
	}
	start := h.s.now()
	return func(result *mcp.CallToolResult, callErr error) {
		adm.Done(0)
		status, spend := "success", cost
		if callErr != nil {
			status, spend = "failure", 0
		}
		// The caller may be gone (or the gateway shutting down): settle regardless.
		if err := res.Commit(context.WithoutCancel(ctx), spend); err != nil {
			h.s.log.Error("commit tool-call budget", "server", server, "tool", tool, "err", err)
		}
		row := &store.SpendLog{RequestID: res.ID, CallType: store.CallMCPTool, KeyID: c.KeyID, KeyHash: c.KeyHash,
			KeyAlias: c.KeyAlias, UserID: c.UserID, TeamID: c.TeamID, OrgID: c.OrgID, Model: server + "-" + tool,
			MCPServer: server, MCPTool: tool, Spend: spend, StartTime: start, EndTime: h.s.now(), Status: status,
			Tags: append([]string(nil), c.Tags...)}
		if err := h.rt.spend.Write(context.WithoutCancel(ctx), row); err != nil { // waits at most MaxWait
			h.s.log.Error("queue tool-call spend log", "err", err)
		}
	}, nil
}
