package gateway

import (
	"math"
	"strings"
	"testing"
)

// TestEndUserAndTagBudgets: an admin sets budgets on an end user (the request's "user"
// field) and on a tag; calls naming them are charged and refused with budget_exceeded
// naming that budget, while other end users and tags go through.
func TestEndUserAndTagBudgets(t *testing.T) {
	up := fakeLLM(t)
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "gpt",
			"litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up, "api_key": "sk-upstream"},
			// 0.30 per call; a call reserves about 0.51.
			"model_info": map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02, "max_output_tokens": 20},
		}}
	})
	t.Cleanup(func() { g.s.llmClose() })
	key := must(t, g.admin(t, "POST", "/key/generate", map[string]any{"key_alias": "eu"}), 200)["key"].(string)
	auth := []string{"Authorization", "Bearer " + key}

	bad := []struct {
		path  string
		body  map[string]any
		param string
	}{
		{"/customer/new", map[string]any{"max_budget": 1}, "user_id"},
		{"/customer/new", map[string]any{"user_id": "x", "max_budget": -1}, "max_budget"},
		{"/customer/new", map[string]any{"user_id": "x", "budget_duration": "soon"}, "budget_duration"},
		{"/tag/new", map[string]any{"name": "", "max_budget": 1}, "name"},
	}
	for _, tc := range bad {
		if r := g.admin(t, "POST", tc.path, tc.body); r.status != 400 || r.errorField(t, "param") != tc.param {
			t.Errorf("%s %v: %d %s, want 400 naming %s", tc.path, tc.body, r.status, r.body, tc.param)
		}
	}
	if r := g.do(t, "POST", "/customer/new", map[string]any{"user_id": "alice", "max_budget": 0.6}, auth...); r.status != 401 && r.status != 403 {
		t.Errorf("non-admin /customer/new: %d %s", r.status, r.body)
	}
	c := must(t, g.admin(t, "POST", "/customer/new", map[string]any{"user_id": "alice", "max_budget": 0.6, "budget_duration": "30d"}), 200)
	if c["max_budget"] != 0.6 || c["budget_duration"] != "30d" || c["budget_reset_at"] == nil {
		t.Errorf("/customer/new: %v", c)
	}
	if r := g.admin(t, "POST", "/customer/new", map[string]any{"user_id": "alice", "max_budget": 1}); r.status != 409 {
		t.Errorf("second /customer/new: %d %s", r.status, r.body)
	}
	must(t, g.admin(t, "POST", "/tag/new", map[string]any{"name": "prod", "max_budget": 0.6}), 200)

	chat := func(extra map[string]any, headers ...string) response {
		body := map[string]any{"model": "gpt", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
		for k, v := range extra {
			body[k] = v
		}
		return g.do(t, "POST", "/v1/chat/completions", body, append(append([]string(nil), auth...), headers...)...)
	}
	for _, tc := range []struct {
		name    string
		extra   map[string]any
		headers []string
		label   string
	}{
		{"end user", map[string]any{"user": "alice"}, nil, "EndUser=alice"},
		{"tag", nil, []string{"x-litellm-tags", "prod"}, "Tag=prod"},
	} {
		if r := chat(tc.extra, tc.headers...); r.status != 200 {
			t.Fatalf("%s: first call %d %s", tc.name, r.status, r.body)
		}
		r := chat(tc.extra, tc.headers...)
		if r.status != 400 || r.errorField(t, "type") != "budget_exceeded" || !strings.Contains(r.errorField(t, "message"), tc.label) {
			t.Errorf("%s: second call %d %s, want budget_exceeded naming %s", tc.name, r.status, r.body, tc.label)
		}
	}
	if r := chat(map[string]any{"user": "bob"}, "x-litellm-tags", "dev"); r.status != 200 {
		t.Errorf("other end user and tag: %d %s", r.status, r.body)
	}
	info := must(t, g.admin(t, "GET", "/customer/info?end_user_id=alice", nil), 200)
	if sp, _ := info["spend"].(float64); math.Abs(sp-0.3) > 1e-9 || info["user_id"] != "alice" {
		t.Errorf("/customer/info: %v", info)
	}
	// Raising the budget lets alice through again; deleting it removes the limit.
	must(t, g.admin(t, "POST", "/customer/update", map[string]any{"user_id": "alice", "max_budget": 2}), 200)
	if r := chat(map[string]any{"user": "alice"}); r.status != 200 {
		t.Errorf("after raising the budget: %d %s", r.status, r.body)
	}
	must(t, g.admin(t, "POST", "/tag/delete", map[string]any{"name": "prod"}), 200)
	if r := g.admin(t, "GET", "/tag/info?name=prod", nil); r.status != 404 {
		t.Errorf("/tag/info after delete: %d %s", r.status, r.body)
	}
	if r := chat(nil, "x-litellm-tags", "prod"); r.status != 200 {
		t.Errorf("tag after its budget was deleted: %d %s", r.status, r.body)
	}
	if r := g.admin(t, "POST", "/customer/update", map[string]any{"user_id": "nobody", "max_budget": 1}); r.status != 404 {
		t.Errorf("update of an unknown end user: %d %s", r.status, r.body)
	}
}
