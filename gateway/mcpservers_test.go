package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toolgate/toolgate/store"
)

func TestCreateServerValidation(t *testing.T) {
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "from_file", URL: "http://127.0.0.1:1/mcp"}}
	})
	ok := func(extra string) string {
		return `{"server_name":"dup","url":"http://127.0.0.1:1/mcp"` + extra + `}`
	}
	if r := g.admin(t, "POST", "/v1/mcp/server", ok("")); r.status != 201 {
		t.Fatalf("create: got %d %s", r.status, r.body)
	}
	tests := []struct {
		name   string
		body   string
		status int
		param  string
	}{
		{"malformed JSON", `{"server_name":`, 400, ""},
		{"not an object", `[1,2]`, 400, ""},
		{"trailing data", `{"server_name":"a","url":"http://x"} {}`, 400, ""},
		{"empty body", ``, 400, ""},
		{"unknown field", `{"server_name":"a","url":"http://x","colour":"red"}`, 400, "colour"},
		{"wrong type", `{"server_name":7,"url":"http://x"}`, 400, "server_name"},
		{"missing name", `{"url":"http://x"}`, 400, "server_name"},
		{"hyphen in name", `{"server_name":"my-server","url":"http://x"}`, 400, "server_name"},
		{"space in name", `{"server_name":"my server","url":"http://x"}`, 400, "server_name"},
		{"name too long", `{"server_name":"` + strings.Repeat("a", 65) + `","url":"http://x"}`, 400, "server_name"},
		{"missing url", `{"server_name":"a"}`, 400, "url"},
		{"ftp url", `{"server_name":"a","url":"ftp://example.com/mcp"}`, 400, "url"},
		{"file url", `{"server_name":"a","url":"file:///etc/passwd"}`, 400, "url"},
		{"no host", `{"server_name":"a","url":"http:///mcp"}`, 400, "url"},
		{"userinfo", `{"server_name":"a","url":"http://u:p@example.com/mcp"}`, 400, "url"},
		{"metadata ip", `{"server_name":"a","url":"http://169.254.169.254/latest"}`, 400, "url"},
		{"link-local ip", `{"server_name":"a","url":"http://169.254.10.1/mcp"}`, 400, "url"},
		{"mapped link-local ip", `{"server_name":"a","url":"http://[::ffff:169.254.169.254]/mcp"}`, 400, "url"},
		{"ipv6 link-local", `{"server_name":"a","url":"http://[fe80::1]/mcp"}`, 400, "url"},
		{"aws ipv6 metadata", `{"server_name":"a","url":"http://[fd00:ec2::254]/mcp"}`, 400, "url"},
		{"alibaba metadata ip", `{"server_name":"a","url":"http://100.100.100.200/latest"}`, 400, "url"},
		{"gcp metadata host", `{"server_name":"a","url":"http://metadata.google.internal/computeMetadata"}`, 400, "url"},
		{"gcp metadata host with dot", `{"server_name":"a","url":"http://Metadata.Google.Internal./x"}`, 400, "url"},
		{"bad transport", `{"server_name":"a","url":"http://x","transport":"websocket"}`, 400, "transport"},
		{"stdio transport", `{"server_name":"a","url":"http://x","transport":"stdio"}`, 400, "transport"},
		{"stdio command", `{"server_name":"a","url":"http://x","command":"npx"}`, 400, "command"},
		{"bad auth_type", `{"server_name":"a","url":"http://x","auth_type":"magic"}`, 400, "auth_type"},
		{"unknown credentials field", `{"server_name":"a","url":"http://x","credentials":{"password":"p"}}`, 400, "credentials.password"},
		{"credentials not an object", `{"server_name":"a","url":"http://x","credentials":"s"}`, 400, "credentials"},
		{"bad static header name", `{"server_name":"a","url":"http://x","static_headers":{"bad header":"v"}}`, 400, "static_headers"},
		{"static header newline", `{"server_name":"a","url":"http://x","static_headers":{"X-A":"v\r\nX-B: w"}}`, 400, "static_headers"},
		{"forwarding authorization", `{"server_name":"a","url":"http://x","extra_headers":["Authorization"]}`, 400, "extra_headers"},
		{"empty allowed tool", `{"server_name":"a","url":"http://x","allowed_tools":[""]}`, 400, "allowed_tools"},
		{"bad oauth2_flow", `{"server_name":"a","url":"http://x","oauth2_flow":"implicit"}`, 400, "oauth2_flow"},
		{"bad token_url", `{"server_name":"a","url":"http://x","token_url":"javascript:alert(1)"}`, 400, "token_url"},
		{"negative cost", `{"server_name":"a","url":"http://x","mcp_info":{"mcp_server_cost_info":{"default_cost_per_query":-1}}}`, 400, "mcp_info.mcp_server_cost_info.default_cost_per_query"},
		{"bad server_id", `{"server_id":"a b","server_name":"a","url":"http://x"}`, 400, "server_id"},
		{"duplicate name", ok(""), 409, "server_name"},
		{"config server's name", `{"server_name":"from_file","url":"http://x"}`, 409, "server_name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.admin(t, "POST", "/v1/mcp/server", tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			e, _ := r.json(t)["error"].(map[string]any)
			if e == nil || e["message"] == "" || e["type"] == "" || e["code"] == "" {
				t.Fatalf("body %s is not a LiteLLM error", r.body)
			}
			got, _ := e["param"].(string)
			if got != tc.param {
				t.Errorf("param %q, want %q (%s)", got, tc.param, r.body)
			}
		})
	}
}

func TestPrivateUpstreamsAllowed(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.AllowPrivateUpstreams = true })
	r := g.admin(t, "POST", "/v1/mcp/server", `{"server_name":"meta","url":"http://169.254.169.254/mcp"}`)
	if r.status != 201 {
		t.Errorf("got %d %s, want 201", r.status, r.body)
	}
}

func TestServerCRUD(t *testing.T) {
	g := newTestGateway(t, func(c *Config) {
		c.MCPServers = []*store.MCPServer{{Name: "from_file", URL: "http://127.0.0.1:1/mcp"}}
	})
	r := g.admin(t, "POST", "/v1/mcp/server", map[string]any{
		"server_name":    "github",
		"url":            "http://127.0.0.1:1/mcp",
		"transport":      "streamable_http",
		"auth_type":      "bearer_token",
		"credentials":    map[string]any{"auth_value": "ghp_supersecret"},
		"static_headers": map[string]string{"X-Team": "core", "X-Api-Token": "static-secret"},
		"allowed_tools":  []string{"search"},
		"description":    "GitHub",
	})
	if r.status != 201 {
		t.Fatalf("create: got %d %s", r.status, r.body)
	}
	created := r.json(t)
	id, _ := created["server_id"].(string)
	if id == "" {
		t.Fatalf("no server_id in %s", r.body)
	}
	for _, secret := range []string{"ghp_supersecret", "static-secret"} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("create response contains %q: %s", secret, r.body)
		}
	}
	if diff := cmp.Diff([]any{"auth_value"}, created["credentials_set"]); diff != "" {
		t.Errorf("credentials_set (-want +got):\n%s", diff)
	}
	if created["transport"] != "http" || created["source"] != "db" || created["available_on_public_internet"] != true {
		t.Errorf("created: %s", r.body)
	}

	stored, err := g.db.MCPServer(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Credentials) == 0 || strings.Contains(string(stored.Credentials), "ghp_supersecret") {
		t.Errorf("stored credentials are not sealed: %q", stored.Credentials)
	}

	r = g.admin(t, "GET", "/v1/mcp/server/"+id, nil)
	if r.status != 200 || strings.Contains(string(r.body), "ghp_supersecret") || r.json(t)["server_name"] != "github" {
		t.Errorf("get: got %d %s", r.status, r.body)
	}
	r = g.admin(t, "GET", "/v1/mcp/server", nil)
	var list []map[string]any
	if err := jsonUnmarshal(r.body, &list); err != nil || len(list) != 2 {
		t.Fatalf("list: got %d %s, want two servers", r.status, r.body)
	}
	if list[0]["server_name"] != "from_file" || list[0]["source"] != "config" {
		t.Errorf("list[0] = %v, want the config server", list[0])
	}

	// PUT changes only what it names and keeps the credentials.
	r = g.admin(t, "PUT", "/v1/mcp/server", map[string]any{"server_id": id, "description": "GitHub API"})
	if r.status != 200 || r.json(t)["description"] != "GitHub API" || r.json(t)["url"] != "http://127.0.0.1:1/mcp" {
		t.Fatalf("update: got %d %s", r.status, r.body)
	}
	if diff := cmp.Diff([]any{"auth_value"}, r.json(t)["credentials_set"]); diff != "" {
		t.Errorf("credentials after update (-want +got):\n%s", diff)
	}
	r = g.admin(t, "PUT", "/v1/mcp/server", map[string]any{"server_id": id, "credentials": nil})
	if diff := cmp.Diff([]any{}, r.json(t)["credentials_set"]); r.status != 200 || diff != "" {
		t.Errorf("clearing credentials: got %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		param              string
	}{
		{"get unknown", "GET", "/v1/mcp/server/nope", nil, 404, "server_id"},
		{"delete unknown", "DELETE", "/v1/mcp/server/nope", nil, 404, "server_id"},
		{"put without id", "PUT", "/v1/mcp/server", map[string]any{"description": "x"}, 400, "server_id"},
		{"put unknown", "PUT", "/v1/mcp/server", map[string]any{"server_id": "nope"}, 404, "server_id"},
		{"put bad url", "PUT", "/v1/mcp/server", map[string]any{"server_id": id, "url": "gopher://x"}, 400, "url"},
		{"put config server", "PUT", "/v1/mcp/server", map[string]any{"server_id": "from_file", "description": "x"}, 409, "server_id"},
		{"delete config server", "DELETE", "/v1/mcp/server/from_file", nil, 409, "server_id"},
		{"rename onto config server", "PUT", "/v1/mcp/server", map[string]any{"server_id": id, "server_name": "from_file"}, 409, "server_name"},
		{"health of unknown", "GET", "/v1/mcp/server/health?server_ids=nope", nil, 404, "server_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.admin(t, tc.method, tc.path, tc.body)
			if r.status != tc.status || r.errorField(t, "param") != tc.param {
				t.Errorf("got %d %s, want %d naming %q", r.status, r.body, tc.status, tc.param)
			}
		})
	}

	r = g.admin(t, "GET", "/v1/mcp/server/health", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"server_name":"github"`) {
		t.Errorf("health: got %d %s", r.status, r.body)
	}

	r = g.admin(t, "DELETE", "/v1/mcp/server/"+id, nil)
	if r.status != 200 {
		t.Fatalf("delete: got %d %s", r.status, r.body)
	}
	if r := g.admin(t, "GET", "/v1/mcp/server/"+id, nil); r.status != 404 {
		t.Errorf("get after delete: got %d, want 404", r.status)
	}

	entries, err := g.db.AuditLog(context.Background(), store.AuditFilter{ObjectType: "mcp_server"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
		for _, secret := range []string{"ghp_supersecret", "static-secret"} {
			if strings.Contains(string(e.Before)+string(e.After), secret) {
				t.Errorf("audit entry %s contains %q", e.Action, secret)
			}
		}
		if e.Actor != "master_key" || e.ObjectID != id {
			t.Errorf("audit entry %+v: want actor master_key, object %s", e, id)
		}
	}
	if diff := cmp.Diff([]string{"delete", "update", "update", "create"}, actions); diff != "" {
		t.Errorf("audit actions (-want +got):\n%s", diff)
	}
}

func TestCredentialsNeedASealKey(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.MasterKey = ""; c.MasterKeyOut = &syncBuffer{} })
	// The generated key is not configured, so nothing can seal credentials.
	h, _ := g.db.Setting(context.Background(), settingMasterKeyHash)
	if h == "" {
		t.Fatal("no master key hash stored")
	}
	g.s.masterHash, _ = decodeHash(hashKey(testMasterKey)) // let the test authenticate
	r := g.admin(t, "POST", "/v1/mcp/server", `{"server_name":"a","url":"http://x","auth_type":"bearer_token","credentials":{"auth_value":"s"}}`)
	if r.status != 400 || r.errorField(t, "param") != "credentials" || !strings.Contains(r.errorField(t, "message"), "TOOLGATE_SALT_KEY") {
		t.Errorf("got %d %s, want 400 naming credentials and TOOLGATE_SALT_KEY", r.status, r.body)
	}
}

// TestRegistrySurvivesRestart: a new Server on the same database serves what was
// registered, credentials included.
func TestRegistrySurvivesRestart(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.SaltKey = "restart-salt" })
	r := g.admin(t, "POST", "/v1/mcp/server", `{"server_name":"kept","url":"http://127.0.0.1:1/mcp","auth_type":"api_key","credentials":{"auth_value":"k-123"}}`)
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	s2, err := New(Config{Store: g.db, MasterKey: testMasterKey, SaltKey: "restart-salt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	srv := s2.reg.Load().byName["kept"]
	if srv == nil {
		t.Fatal("server lost across the restart")
	}
	spec, err := s2.spec(srv)
	if err != nil || spec.AuthHeaders["X-API-Key"] != "k-123" {
		t.Errorf("credentials after restart: %v %v", spec.AuthHeaders, err)
	}
}
