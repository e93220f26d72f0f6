package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/store"
)

// identityServers are upstreams registered from config for the identity tests. Their URLs
// point nowhere; the tests exercise permissions, not upstream traffic.
var identityServers = []*store.MCPServer{
	{ID: "srv-alpha", Name: "alpha", URL: "http://127.0.0.1:9/mcp", Transport: "http", AccessGroups: []string{"dev"}, AvailableOnPublicInternet: true},
	{ID: "srv-beta", Name: "beta", URL: "http://127.0.0.1:9/mcp", Transport: "http", AvailableOnPublicInternet: true},
	{ID: "srv-intra", Name: "intra", URL: "http://127.0.0.1:9/mcp", Transport: "http"},
	{ID: "srv-open", Name: "open", URL: "http://127.0.0.1:9/mcp", Transport: "http", AllowAllKeys: true, AvailableOnPublicInternet: true},
}

func newIdentityGateway(t testing.TB) *testGateway {
	t.Helper()
	return newTestGateway(t, func(c *Config) {
		c.MCPServers = nil
		for _, s := range identityServers {
			cp := *s
			c.MCPServers = append(c.MCPServers, &cp)
		}
	})
}

// as sends a request with a key.
func (g *testGateway) as(t testing.TB, key, method, path string, body any) response {
	t.Helper()
	return g.do(t, method, path, body, "Authorization", "Bearer "+key)
}

// must fails the test unless r has status want, and returns the decoded body.
func must(t testing.TB, r response, want int) map[string]any {
	t.Helper()
	if r.status != want {
		t.Fatalf("got %d %s, want %d", r.status, r.body, want)
	}
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	return m
}

// newUserKey creates a user with role and returns the secret of a key the admin made
// for it (not created by the user).
func (g *testGateway) newUserKey(t testing.TB, userID, role string, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"user_id": userID, "user_role": role}
	for k, v := range extra {
		body[k] = v
	}
	m := must(t, g.admin(t, "POST", "/user/new", body), 200)
	key, _ := m["key"].(string)
	if !strings.HasPrefix(key, "sk-") {
		t.Fatalf("user/new returned no key: %v", m)
	}
	return key
}

func (g *testGateway) keyCount(t testing.TB) int {
	t.Helper()
	ks, err := g.db.Keys(context.Background(), store.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(ks)
}

func TestKeyLifecycle(t *testing.T) {
	g := newIdentityGateway(t)
	m := must(t, g.admin(t, "POST", "/key/generate", map[string]any{
		"key_alias": "ci", "models": []string{"gpt-4o"}, "metadata": map[string]any{"env": "ci"}, "duration": "1h",
		"max_budget": 10, "object_permission": map[string]any{"mcp_servers": []string{"alpha"}},
	}), 200)
	secret := m["key"].(string)
	if len(secret) != len("sk-")+64 {
		t.Errorf("key %q: want sk- and 64 hex digits", secret)
	}
	if got, want := m["key_name"], "sk-..."+secret[len(secret)-4:]; got != want {
		t.Errorf("key_name = %v, want %v", got, want)
	}
	id := m["token"].(string)
	if m["expires"] == nil || m["max_budget"].(float64) != 10 {
		t.Errorf("generate response lacks expires or max_budget: %v", m)
	}
	k, err := g.db.Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if k.TokenHash != hashKey(secret) || strings.Contains(k.TokenHash, secret) {
		t.Errorf("stored hash %q is not the SHA-256 of the key", k.TokenHash)
	}

	// The key works, and can read itself.
	info := must(t, g.as(t, secret, "GET", "/key/info", nil), 200)
	if info["info"].(map[string]any)["key_alias"] != "ci" {
		t.Errorf("key/info: %v", info)
	}
	must(t, g.admin(t, "GET", "/key/info?key="+secret, nil), 200)
	must(t, g.admin(t, "GET", "/key/info?key="+id, nil), 200)
	list := must(t, g.admin(t, "GET", "/key/list?return_full_object=true", nil), 200)
	if list["total_count"].(float64) != 1 {
		t.Errorf("key/list: %v", list)
	}

	up := must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": id, "key_alias": "ci2", "tags": []string{"a"}}), 200)
	if up["key_alias"] != "ci2" || up["models"].([]any)[0] != "gpt-4o" {
		t.Errorf("update lost or missed fields: %v", up)
	}

	must(t, g.admin(t, "POST", "/key/block", map[string]any{"key": id}), 200)
	if r := g.as(t, secret, "GET", "/key/info", nil); r.status != 403 {
		t.Errorf("blocked key: got %d, want 403", r.status)
	}
	must(t, g.admin(t, "POST", "/key/unblock", map[string]any{"key": id}), 200)
	must(t, g.as(t, secret, "GET", "/key/info", nil), 200)

	// Regenerate with a grace period: both work. Without: the old one stops at once.
	rg := must(t, g.admin(t, "POST", "/key/regenerate", map[string]any{"key": id, "grace_period": "1h"}), 200)
	secret2 := rg["key"].(string)
	if secret2 == secret || rg["token"] != id {
		t.Fatalf("regenerate: %v", rg)
	}
	must(t, g.as(t, secret, "GET", "/key/info", nil), 200)
	must(t, g.as(t, secret2, "GET", "/key/info", nil), 200)
	rg = must(t, g.admin(t, "POST", "/key/"+id+"/regenerate", nil), 200)
	secret3 := rg["key"].(string)
	for _, old := range []string{secret2} {
		if r := g.as(t, old, "GET", "/key/info", nil); r.status != 401 {
			t.Errorf("old key after regenerate without grace: got %d, want 401", r.status)
		}
	}
	must(t, g.as(t, secret3, "GET", "/key/info", nil), 200)

	del := must(t, g.admin(t, "POST", "/key/delete", map[string]any{"keys": []string{id}}), 200)
	if fmt.Sprint(del["deleted_keys"]) != "["+id+"]" {
		t.Errorf("delete: %v", del)
	}
	if r := g.as(t, secret3, "GET", "/key/info", nil); r.status != 401 {
		t.Errorf("deleted key: got %d, want 401", r.status)
	}

	// Every mutation is audited, without secrets.
	entries, err := g.db.AuditLog(context.Background(), store.AuditFilter{ObjectType: "key", ObjectID: id})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range entries {
		actions[e.Action]++
		for _, raw := range []json.RawMessage{e.Before, e.After} {
			for _, s := range []string{secret, secret2, secret3, hashKey(secret), hashKey(secret2)} {
				if strings.Contains(string(raw), s) {
					t.Errorf("audit %s entry contains a secret or its hash: %s", e.Action, raw)
				}
			}
		}
		if e.Actor != "master_key" {
			t.Errorf("audit actor = %q, want master_key", e.Actor)
		}
	}
	for _, a := range []string{"create", "update", "block", "unblock", "regenerate", "delete"} {
		if actions[a] == 0 {
			t.Errorf("no audit entry for %s (have %v)", a, actions)
		}
	}
	if actions["regenerate"] != 2 {
		t.Errorf("regenerate audited %d times, want 2", actions["regenerate"])
	}
}

func TestIdentityBadInput(t *testing.T) {
	g := newIdentityGateway(t)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "t1"}), 200)
	before := g.keyCount(t)
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		param  string
	}{
		{"unknown fields named", "POST", "/key/generate", map[string]any{"key_alias": "x", "bogus": 1, "also_bogus": 2}, 400, "also_bogus"},
		{"malformed JSON", "POST", "/key/generate", `{"key_alias": `, 400, ""},
		{"not an object", "POST", "/key/generate", `[1]`, 400, ""},
		{"wrong type", "POST", "/key/generate", map[string]any{"models": "gpt"}, 400, "models"},
		{"absent team", "POST", "/key/generate", map[string]any{"team_id": "nope"}, 400, "team_id"},
		{"absent user", "POST", "/key/generate", map[string]any{"user_id": "nope"}, 400, "user_id"},
		{"absent org", "POST", "/key/generate", map[string]any{"organization_id": "nope"}, 400, "organization_id"},
		{"absent toolset", "POST", "/key/generate", map[string]any{"object_permission": map[string]any{"mcp_toolsets": []string{"nope"}}}, 400, "object_permission.mcp_toolsets"},
		{"unknown object_permission field", "POST", "/key/generate", map[string]any{"object_permission": map[string]any{"mcp_serverz": []string{"a"}}}, 400, "object_permission"},
		{"bad duration", "POST", "/key/generate", map[string]any{"duration": "soon"}, 400, "duration"},
		{"negative budget", "POST", "/key/generate", map[string]any{"max_budget": -1}, 400, "max_budget"},
		{"negative model budget", "POST", "/key/generate", map[string]any{"model_max_budget": map[string]any{"gpt": -1}}, 400, "model_max_budget"},
		{"model budget not a number", "POST", "/key/generate", map[string]any{"model_max_budget": map[string]any{"gpt": map[string]any{"budget_limit": "lots"}}}, 400, "model_max_budget"},
		{"model budget bad period", "POST", "/key/generate", map[string]any{"model_max_budget": map[string]any{"gpt": map[string]any{"budget_limit": 1, "time_period": "soon"}}}, 400, "model_max_budget"},
		{"model budget unknown field", "POST", "/key/generate", map[string]any{"model_max_budget": map[string]any{"gpt": map[string]any{"budget_limit": 1, "limit": 2}}}, 400, "model_max_budget"},
		{"model budgets not an object", "POST", "/key/generate", map[string]any{"model_max_budget": []any{"gpt"}}, 400, "model_max_budget"},
		{"unknown key id", "GET", "/key/info?key=nope", nil, 404, "key"},
		{"update unknown key", "POST", "/key/update", map[string]any{"key": "nope", "key_alias": "a"}, 404, "key"},
		{"delete unknown key", "POST", "/key/delete", map[string]any{"keys": []string{"nope"}}, 404, "key"},
		{"unknown user", "GET", "/user/info?user_id=nope", nil, 404, "user_id"},
		{"unknown team", "GET", "/team/info?team_id=nope", nil, 404, "team_id"},
		{"unknown org", "GET", "/organization/info?organization_id=nope", nil, 404, "organization_id"},
		{"team with absent org", "POST", "/team/new", map[string]any{"organization_id": "nope"}, 400, "organization_id"},
		{"team with absent member", "POST", "/team/new", map[string]any{"team_id": "t2", "members_with_roles": []map[string]any{{"user_id": "ghost"}}}, 400, "members_with_roles[0].user_id"},
		{"user with bad role", "POST", "/user/new", map[string]any{"user_role": "root"}, 400, "user_role"},
		{"user into absent team", "POST", "/user/new", map[string]any{"user_id": "u9", "teams": []string{"nope"}}, 400, "teams"},
		{"toolset on absent server", "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "x", "tools": []map[string]any{{"server_id": "nope", "tool_name": "t"}}}, 400, "tools[0].server_id"},
		{"toolset unknown field", "POST", "/v1/mcp/toolset", map[string]any{"toolset_name": "x", "toolz": 1}, 400, "toolz"},
		{"unknown toolset", "DELETE", "/v1/mcp/toolset/nope", nil, 404, "toolset_id"},
		{"explain unknown param", "GET", "/v1/mcp/access/explain?server=alpha&bogus=1", nil, 400, "bogus"},
		{"explain unknown server", "GET", "/v1/mcp/access/explain?server=nope", nil, 404, "server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.admin(t, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.param != "" {
				if got := r.errorField(t, "param"); got != tc.param {
					t.Errorf("param = %q, want %q (%s)", got, tc.param, r.body)
				}
			}
		})
	}
	if after := g.keyCount(t); after != before {
		t.Errorf("failed requests wrote keys: %d before, %d after", before, after)
	}
	if _, err := g.db.Team(context.Background(), "t2"); err == nil {
		t.Errorf("team t2 was created by a failed request")
	}
	if _, err := g.db.User(context.Background(), "u9"); err == nil {
		t.Errorf("user u9 was created by a failed request")
	}
}

// TestGuardEditOnlyOwnKeys: a non-admin may edit only keys it created and still owns.
func TestGuardEditOnlyOwnKeys(t *testing.T) {
	g := newIdentityGateway(t)
	alice := g.newUserKey(t, "alice", store.RoleInternalUser, nil)
	bob := g.newUserKey(t, "bob", store.RoleInternalUser, nil)

	own := must(t, g.as(t, alice, "POST", "/key/generate", map[string]any{"key_alias": "alice-own"}), 200)
	ownID := own["token"].(string)
	if own["user_id"] != "alice" || own["created_by"] != "alice" {
		t.Fatalf("self-generated key: %v", own)
	}
	must(t, g.as(t, alice, "POST", "/key/update", map[string]any{"key": ownID, "key_alias": "alice-own2"}), 200)

	// The key the admin made for alice: hers, but not created by her.
	adminMade := must(t, g.admin(t, "GET", "/key/list?user_id=alice&return_full_object=true", nil), 200)
	var adminMadeID string
	for _, k := range adminMade["keys"].([]any) {
		if km := k.(map[string]any); km["created_by"] == "master_key" {
			adminMadeID = km["token"].(string)
		}
	}
	if adminMadeID == "" {
		t.Fatal("no admin-made key for alice")
	}
	tests := []struct {
		name string
		key  string
		path string
		body map[string]any
	}{
		{"update a key the admin made", alice, "/key/update", map[string]any{"key": adminMadeID, "key_alias": "mine"}},
		{"regenerate a key the admin made", alice, "/key/regenerate", map[string]any{"key": adminMadeID}},
		{"delete a key the admin made", alice, "/key/delete", map[string]any{"keys": []string{adminMadeID}}},
		{"update another user's key", bob, "/key/update", map[string]any{"key": ownID, "key_alias": "bobs"}},
		{"regenerate another user's key", bob, "/key/regenerate", map[string]any{"key": ownID}},
		{"delete another user's key", bob, "/key/delete", map[string]any{"keys": []string{ownID}}},
		{"block own key", alice, "/key/block", map[string]any{"key": ownID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := g.as(t, tc.key, "POST", tc.path, tc.body); r.status != 403 {
				t.Errorf("got %d %s, want 403", r.status, r.body)
			}
		})
	}
	// Created but no longer owned: the admin moved it to bob.
	must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": ownID, "user_id": "bob"}), 200)
	if r := g.as(t, alice, "POST", "/key/update", map[string]any{"key": ownID, "key_alias": "back"}); r.status != 403 {
		t.Errorf("created but no longer owned: got %d, want 403", r.status)
	}
	if r := g.as(t, bob, "POST", "/key/update", map[string]any{"key": ownID, "key_alias": "back"}); r.status != 403 {
		t.Errorf("owned but not created: got %d, want 403", r.status)
	}
	// A team key stops being editable when its creator leaves the team.
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "t", "members_with_roles": []map[string]any{{"user_id": "alice"}}}), 200)
	tk := must(t, g.as(t, alice, "POST", "/key/generate", map[string]any{"team_id": "t"}), 200)
	must(t, g.as(t, alice, "POST", "/key/update", map[string]any{"key": tk["token"], "key_alias": "team-key"}), 200)
	must(t, g.admin(t, "POST", "/team/member_delete", map[string]any{"team_id": "t", "user_id": "alice"}), 200)
	if r := g.as(t, alice, "POST", "/key/update", map[string]any{"key": tk["token"], "key_alias": "still-mine"}); r.status != 403 {
		t.Errorf("team key after leaving the team: got %d, want 403", r.status)
	}
	// Reading: own keys only.
	if r := g.as(t, bob, "GET", "/key/info?key="+adminMadeID, nil); r.status != 403 {
		t.Errorf("bob reads alice's key: got %d, want 403", r.status)
	}
	if r := g.as(t, bob, "GET", "/key/list?user_id=alice", nil); r.status != 403 {
		t.Errorf("bob lists alice's keys: got %d, want 403", r.status)
	}
}

// TestGuardLimitsNeedAdmin: budget and limit fields need an admin.
func TestGuardLimitsNeedAdmin(t *testing.T) {
	g := newIdentityGateway(t)
	alice := g.newUserKey(t, "alice", store.RoleInternalUser, nil)
	own := must(t, g.as(t, alice, "POST", "/key/generate", nil), 200)
	id := own["token"].(string)
	for _, f := range []string{"max_budget", "soft_budget", "rpm_limit", "tpm_limit", "max_parallel_requests", "model_max_budget"} {
		for _, path := range []string{"/key/generate", "/key/update", "/key/regenerate"} {
			t.Run(f+path, func(t *testing.T) {
				body := map[string]any{f: 1000}
				if path != "/key/generate" {
					body["key"] = id
				}
				r := g.as(t, alice, "POST", path, body)
				if r.status != 403 || r.errorField(t, "param") != f {
					t.Errorf("got %d %s, want 403 naming %s", r.status, r.body, f)
				}
			})
		}
	}
	for _, f := range []map[string]any{{"budget_duration": "1d"}, {"blocked": false}, {"allow_client_side_credentials": true}} {
		f["key"] = id
		if r := g.as(t, alice, "POST", "/key/update", f); r.status != 403 {
			t.Errorf("%v: got %d, want 403", f, r.status)
		}
	}
	k, _ := g.db.Key(context.Background(), id)
	if k.Limits.MaxBudget != nil || k.Limits.RPMLimit != nil {
		t.Errorf("limits were written: %+v", k.Limits)
	}
	// Admin may.
	must(t, g.admin(t, "POST", "/key/update", map[string]any{"key": id, "max_budget": 5}), 200)
	// Team member budget too.
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "t", "members_with_roles": []map[string]any{{"user_id": "alice", "role": "admin"}}}), 200)
	g.newUserKey(t, "carol", store.RoleInternalUser, nil)
	if r := g.as(t, alice, "POST", "/team/member_add", map[string]any{"team_id": "t", "member": map[string]any{"user_id": "carol"}, "max_budget_in_team": 100}); r.status != 403 {
		t.Errorf("team admin sets member budget: got %d, want 403", r.status)
	}
	must(t, g.as(t, alice, "POST", "/team/member_add", map[string]any{"team_id": "t", "member": map[string]any{"user_id": "carol"}}), 200)
}

// TestGuardNoRebind: /key/update and /key/regenerate cannot rebind a key's user, team or
// org for a non-admin, including explicit null and "".
func TestGuardNoRebind(t *testing.T) {
	g := newIdentityGateway(t)
	must(t, g.admin(t, "POST", "/organization/new", map[string]any{"organization_id": "o1"}), 200)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "ta", "organization_id": "o1"}), 200)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "tb"}), 200)
	alice := g.newUserKey(t, "alice", store.RoleInternalUser, map[string]any{"teams": []string{"ta"}})
	g.newUserKey(t, "bob", store.RoleProxyAdmin, nil)
	own := must(t, g.as(t, alice, "POST", "/key/generate", map[string]any{"team_id": "ta"}), 200)
	id := own["token"].(string)
	if own["organization_id"] != "o1" {
		t.Errorf("team key did not take the team's org: %v", own)
	}
	tests := []struct {
		field string
		value any
	}{
		{"user_id", "bob"}, {"user_id", nil}, {"user_id", ""},
		{"team_id", "tb"}, {"team_id", nil}, {"team_id", ""},
		{"organization_id", "o2"}, {"organization_id", nil}, {"organization_id", ""},
	}
	for _, path := range []string{"/key/update", "/key/regenerate"} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s %s=%v", path, tc.field, tc.value), func(t *testing.T) {
				r := g.as(t, alice, "POST", path, map[string]any{"key": id, tc.field: tc.value})
				if r.status != 403 || r.errorField(t, "param") != tc.field {
					t.Errorf("got %d %s, want 403 naming %s", r.status, r.body, tc.field)
				}
			})
		}
	}
	k, err := g.db.Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if k.UserID != "alice" || k.TeamID != "ta" || k.OrgID != "o1" {
		t.Errorf("key rebound: user %q team %q org %q", k.UserID, k.TeamID, k.OrgID)
	}
	// Sending the current values is fine (UIs send the whole object).
	must(t, g.as(t, alice, "POST", "/key/update", map[string]any{"key": id, "user_id": "alice", "team_id": "ta", "organization_id": "o1"}), 200)
	// The old secret still works: no regenerate happened.
	must(t, g.as(t, alice, "GET", "/key/info", nil), 200)
}

// TestGuardGenerateScope: internal users generate keys only for themselves and for teams
// they belong to, never with broader permissions than their own.
func TestGuardGenerateScope(t *testing.T) {
	g := newIdentityGateway(t)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "mine", "object_permission": map[string]any{"mcp_servers": []string{"alpha"}}}), 200)
	must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "theirs"}), 200)
	alice := g.newUserKey(t, "alice", store.RoleInternalUser, map[string]any{"teams": []string{"mine"}, "models": []string{"gpt-4o"}})
	g.newUserKey(t, "bob", store.RoleInternalUser, nil)
	viewer := g.newUserKey(t, "vic", store.RoleInternalUserViewer, nil)
	pav := g.newUserKey(t, "pat", store.RoleProxyAdminViewer, nil)
	before := g.keyCount(t)
	refused := []struct {
		name string
		key  string
		body map[string]any
	}{
		{"for another user", alice, map[string]any{"user_id": "bob"}},
		{"for no user (null)", alice, map[string]any{"user_id": nil}},
		{"for no user (empty)", alice, map[string]any{"user_id": ""}},
		{"for a team not joined", alice, map[string]any{"team_id": "theirs"}},
		{"into an org", alice, map[string]any{"organization_id": "o"}},
		{"MCP grants the owner lacks", alice, map[string]any{"object_permission": map[string]any{"mcp_servers": []string{"beta"}}}},
		{"models the owner lacks", alice, map[string]any{"models": []string{"gpt-5"}}},
		{"internal_user_viewer is read-only", viewer, nil},
		{"proxy_admin_viewer is read-only", pav, nil},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if r := g.as(t, tc.key, "POST", "/key/generate", tc.body); r.status != 403 {
				t.Errorf("got %d %s, want 403", r.status, r.body)
			}
		})
	}
	if after := g.keyCount(t); after != before {
		t.Errorf("refused requests wrote %d keys", after-before)
	}
	// Allowed: for self, for a team joined, narrowing grants inside the team.
	must(t, g.as(t, alice, "POST", "/key/generate", map[string]any{"user_id": "alice"}), 200)
	k := must(t, g.as(t, alice, "POST", "/key/generate", map[string]any{"team_id": "mine", "object_permission": map[string]any{"mcp_servers": []string{"alpha", "beta"}}}), 200)
	// A key naming beta inside a team that grants only alpha still cannot reach beta.
	r := must(t, g.admin(t, "GET", "/v1/mcp/access/explain?key_id="+k["token"].(string)+"&server=beta&tool=x", nil), 200)
	if r["allowed"] != false || r["denied_by"] != "team" {
		t.Errorf("explain: %v", r)
	}
	// The proxy_admin_viewer may read everything but change nothing.
	must(t, g.as(t, pav, "GET", "/key/list", nil), 200)
	must(t, g.as(t, pav, "GET", "/user/list", nil), 200)
	if r := g.as(t, pav, "POST", "/user/new", map[string]any{"user_id": "x"}); r.status != 403 {
		t.Errorf("viewer creates a user: got %d, want 403", r.status)
	}
}

// TestGuardRouteConfusion: malformed Host headers and paths that merely contain a public
// or user route reach nothing protected. Sent through the real Handler.
func TestGuardRouteConfusion(t *testing.T) {
	g := newIdentityGateway(t)
	alice := g.newUserKey(t, "alice", store.RoleInternalUser, nil)
	for _, host := range []string{"localhost/?x=1", "localhost:4000/#test", "localhost/key/info?", "x/health/liveliness#"} {
		for _, path := range []string{"/key/list", "/key/generate", "/user/list", "/team/list", "/organization/list", "/v1/mcp/toolset", "/v1/mcp/access/explain"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Host = host
			rec := httptest.NewRecorder()
			g.s.Handler().ServeHTTP(rec, req)
			if rec.Code != 401 {
				t.Errorf("Host %q, %s without a key: got %d, want 401", host, path, rec.Code)
			}
		}
	}
	// Paths that contain a public or user route name are not that route: without a key
	// they need one, with a non-admin key they are admin-only.
	for _, path := range []string{
		"/credentials/by_name/openai",
		"/credentials/by_name/key/generate",
		"/v1/credentials/health/liveliness",
		"/admin/key/info",
		"/keyx/generate",
		"/key-generate",
		"/user/info/../new",
		"/health/liveliness/../../user/new",
		"/v1/mcp/toolsetx",
		"/toolsets/x/mcp",
		// dot segments that would clean to a public route
		"/key/generate/../../health/liveliness",
		"/user/new/../../.well-known/oauth-protected-resource",
		// paths that contain an LLM route name
		"/admin/v1/chat/completions",
		"/v1/chat/completions/../../../user/new",
		"/openai/chat/completions",
		"/chat/completionsx",
	} {
		req := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
		req.URL.Path = path
		rec := httptest.NewRecorder()
		g.s.Handler().ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Errorf("%s without a key: got %d %s, want 401", path, rec.Code, rec.Body)
		}
		req = httptest.NewRequest("POST", "/", strings.NewReader(`{"user_id":"x"}`))
		req.URL.Path = path
		req.Header.Set("Authorization", "Bearer "+alice)
		rec = httptest.NewRecorder()
		g.s.Handler().ServeHTTP(rec, req)
		if rec.Code != 403 {
			t.Errorf("%s with a non-admin key: got %d %s, want 403", path, rec.Code, rec.Body)
		}
	}
	if _, err := g.db.User(context.Background(), "x"); err == nil {
		t.Errorf("a confused path created a user")
	}
}

func TestTeamsUsersOrgs(t *testing.T) {
	g := newIdentityGateway(t)
	must(t, g.admin(t, "POST", "/organization/new", map[string]any{"organization_id": "acme", "organization_alias": "Acme", "object_permission": map[string]any{"mcp_servers": []string{"alpha", "beta"}}}), 200)
	g.newUserKey(t, "alice", store.RoleInternalUser, map[string]any{"organization_id": "acme"})
	bob := g.newUserKey(t, "bob", store.RoleInternalUser, nil)
	tm := must(t, g.admin(t, "POST", "/team/new", map[string]any{"team_id": "eng", "team_alias": "Engineering", "organization_id": "acme",
		"members_with_roles": []map[string]any{{"user_id": "alice", "role": "admin"}}}), 200)
	if len(tm["members_with_roles"].([]any)) != 1 {
		t.Errorf("team/new: %v", tm)
	}
	// A non-admin non-member cannot add members; a team admin can (tested elsewhere).
	if r := g.as(t, bob, "POST", "/team/member_add", map[string]any{"team_id": "eng", "member": map[string]any{"user_id": "bob"}}); r.status != 403 {
		t.Errorf("non-member adds self: got %d, want 403", r.status)
	}
	if r := g.as(t, bob, "GET", "/team/info?team_id=eng", nil); r.status != 403 {
		t.Errorf("non-member reads team: got %d, want 403", r.status)
	}
	must(t, g.admin(t, "POST", "/team/member_add", map[string]any{"team_id": "eng", "member": []map[string]any{{"user_id": "bob", "role": "user"}}}), 200)
	info := must(t, g.as(t, bob, "GET", "/team/info?team_id=eng", nil), 200)
	if len(info["team_memberships"].([]any)) != 2 {
		t.Errorf("team/info: %v", info)
	}
	if r := g.admin(t, "POST", "/team/member_add", map[string]any{"team_id": "eng", "member": map[string]any{"user_id": "bob"}}); r.status != 400 {
		t.Errorf("duplicate member: got %d, want 400", r.status)
	}
	must(t, g.admin(t, "POST", "/team/member_update", map[string]any{"team_id": "eng", "user_id": "bob", "role": "admin"}), 200)
	must(t, g.admin(t, "POST", "/team/member_delete", map[string]any{"team_id": "eng", "user_id": "bob"}), 200)
	if r := g.as(t, bob, "GET", "/team/list", nil); r.status != 200 || strings.Contains(string(r.body), "eng") {
		t.Errorf("team/list after removal: %d %s", r.status, r.body)
	}
	ui := must(t, g.as(t, bob, "GET", "/user/info", nil), 200)
	if ui["user_id"] != "bob" {
		t.Errorf("user/info self: %v", ui)
	}
	if r := g.as(t, bob, "GET", "/user/info?user_id=alice", nil); r.status != 403 {
		t.Errorf("user/info other: got %d, want 403", r.status)
	}
	must(t, g.admin(t, "POST", "/user/update", map[string]any{"user_id": "bob", "user_role": "proxy_admin"}), 200)
	// The role change applies at once (cache invalidated): bob is now an admin.
	must(t, g.as(t, bob, "GET", "/user/list", nil), 200)
	ul := must(t, g.admin(t, "GET", "/user/list?page_size=1", nil), 200)
	if ul["total"].(float64) != 2 || len(ul["users"].([]any)) != 1 {
		t.Errorf("user/list: %v", ul)
	}
	if r := g.admin(t, "DELETE", "/organization/delete", map[string]any{"organization_ids": []string{"acme"}}); r.status != 409 {
		t.Errorf("delete org with teams: got %d %s, want 409", r.status, r.body)
	}
	must(t, g.admin(t, "PATCH", "/organization/update", map[string]any{"organization_id": "acme", "organization_alias": "ACME"}), 200)
	oi := must(t, g.admin(t, "GET", "/organization/info?organization_id=acme", nil), 200)
	if oi["organization_alias"] != "ACME" || len(oi["teams"].([]any)) != 1 {
		t.Errorf("organization/info: %v", oi)
	}
	must(t, g.admin(t, "POST", "/team/block", map[string]any{"team_id": "eng"}), 200)
	must(t, g.admin(t, "POST", "/team/delete", map[string]any{"team_ids": []string{"eng"}}), 200)
	must(t, g.admin(t, "POST", "/user/delete", map[string]any{"user_ids": []string{"alice"}}), 200)
	must(t, g.admin(t, "DELETE", "/organization/delete", map[string]any{"organization_ids": []string{"acme"}}), 200)
	ol := g.admin(t, "GET", "/organization/list", nil)
	if ol.status != 200 || strings.TrimSpace(string(ol.body)) != "[]" {
		t.Errorf("organization/list: %d %s", ol.status, ol.body)
	}
	for _, typ := range []string{"user", "team", "organization"} {
		es, err := g.db.AuditLog(context.Background(), store.AuditFilter{ObjectType: typ})
		if err != nil || len(es) == 0 {
			t.Errorf("no audit entries for %s (%v)", typ, err)
		}
	}
}
