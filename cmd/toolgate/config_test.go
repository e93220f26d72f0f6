package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigParses(t *testing.T) {
	cfg, err := loadConfig("serve", []string{"--config", "../../config.example.yaml"},
		env(map[string]string{"TOOLGATE_MASTER_KEY": "sk-example-master", "GITHUB_TOKEN": "ghp_x"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterKey != "sk-example-master" || cfg.DatabaseURL != "sqlite:toolgate.db" || len(cfg.MCPServers) != 2 {
		t.Errorf("got %+v", cfg)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	gh := cfg.MCPServers[1]
	if gh.Name != "github" || gh.AuthType != "bearer_token" || !strings.Contains(string(gh.Credentials), "ghp_x") ||
		gh.StaticHeaders["X-MCP-Readonly"] != "true" || len(gh.AllowedTools) != 2 {
		t.Errorf("github server: %+v", gh)
	}
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `
general_settings:
  master_key: sk-from-file-123
  database_url: sqlite:/tmp/file.db
  shutdown_grace: 3s
  proxy_batch_write_at: 0.25
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		port int
		key  string
		db   string
	}{
		{"defaults", nil, nil, 4000, "", "sqlite:toolgate.db"},
		{"file", []string{"--config", file}, nil, 4000, "sk-from-file-123", "sqlite:/tmp/file.db"},
		{"file from env", nil, map[string]string{"TOOLGATE_CONFIG": file}, 4000, "sk-from-file-123", "sqlite:/tmp/file.db"},
		{"env beats file", []string{"--config", file}, map[string]string{"TOOLGATE_MASTER_KEY": "sk-from-env-123", "DATABASE_URL": "postgres://u@h/db", "PORT": "5000"}, 5000, "sk-from-env-123", "postgres://u@h/db"},
		{"flag beats env", []string{"--port", "6000"}, map[string]string{"PORT": "5000"}, 6000, "", "sqlite:toolgate.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig("serve", tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Port != tc.port || cfg.MasterKey != tc.key || cfg.DatabaseURL != tc.db {
				t.Errorf("got port %d key %q db %q, want %d %q %q", cfg.Port, cfg.MasterKey, cfg.DatabaseURL, tc.port, tc.key, tc.db)
			}
		})
	}
	cfg, _ := loadConfig("serve", []string{"--config", file}, env(nil), io.Discard)
	if cfg.ShutdownGrace != 3*time.Second {
		t.Errorf("shutdown grace %v, want 3s", cfg.ShutdownGrace)
	}
	if cfg.SpendBatchWindow != 250*time.Millisecond {
		t.Errorf("proxy_batch_write_at 0.25: window %v, want 250ms", cfg.SpendBatchWindow)
	}
	if cfg, _ := loadConfig("serve", nil, env(nil), io.Discard); cfg.SpendBatchWindow != time.Second {
		t.Errorf("default spend batch window %v, want 1s", cfg.SpendBatchWindow)
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	file := writeFile(t, `
general_settings:
  master_key: os.environ/NOT_SET
  database_url: mysql://x
  max_request_size_mb: lots
  proxy_batch_write_at: -5
  some_litellm_setting: 1
mcp_servers:
  good:
    url: http://127.0.0.1:1/mcp
  typo:
    url: http://127.0.0.1:2/mcp
    allowed_tool: [x]
  nourl:
    transport: http
unknown_section: {}
`)
	cfg, err := loadConfig("serve", []string{"--config", file}, env(map[string]string{"PORT": "http"}), io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"NOT_SET", "mysql", "max_request_size_mb", "proxy_batch_write_at", "allowed_tool", "nourl: url is required", "PORT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if diff := cmp.Diff([]string{
		"config: unknown top-level key unknown_section ignored",
		"config: general_settings.some_litellm_setting is not used by toolgate",
	}, cfg.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestParseDatabaseURL(t *testing.T) {
	for _, tc := range []struct {
		url, scheme string
		ok          bool
	}{
		{"sqlite:toolgate.db", "sqlite", true},
		{"sqlite:///var/lib/toolgate.db", "sqlite", true},
		{"postgres://u:p@h/db", "postgres", true},
		{"postgresql://u@h/db", "postgresql", true},
		{"sqlite:", "", false},
		{"mysql://h/db", "", false},
		{"toolgate.db", "", false},
	} {
		scheme, _, err := parseDatabaseURL(tc.url)
		if (err == nil) != tc.ok || scheme != tc.scheme {
			t.Errorf("parseDatabaseURL(%q) = %q, %v", tc.url, scheme, err)
		}
	}
	if got := redactDSN("postgres://u:secret@h/db"); strings.Contains(got, "secret") {
		t.Errorf("redactDSN kept the password: %s", got)
	}
	if got := sqlitePath("sqlite:///var/lib/t.db"); got != "/var/lib/t.db" {
		t.Errorf("sqlitePath = %q", got)
	}
}

func TestVersionCommand(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"version"}, env(nil), &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "toolgate ") {
		t.Errorf("version: code %d, output %q", code, out.String())
	}
	if code := run([]string{"bogus"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown command: code %d, want 2", code)
	}
	if code := run([]string{"serve", "--config", "/nonexistent.yaml"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("missing config: code %d, want 2", code)
	}
}

func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte("general_settings:\n  master_key: x\nmcp_servers:\n  a:\n    url: http://x\n"))
	f.Add([]byte("mcp_servers: [1, 2]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg Config
		_ = parseConfigFile(&cfg, data, env(nil))
	})
}

func TestOAuthAndNetworkSettings(t *testing.T) {
	file := writeFile(t, `
general_settings:
  public_url: https://gw.example.com
  authorization_server: true
  access_token_ttl: 30m
  use_x_forwarded_for: true
  trusted_proxies: [10.0.0.0/8, 192.168.1.1]
`)
	cfg, err := loadConfig("serve", []string{"--config", file}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAuth.PublicURL != "https://gw.example.com" || !cfg.OAuth.AuthorizationServer || cfg.OAuth.AccessTokenTTL != 30*time.Minute {
		t.Errorf("oauth: %+v", cfg.OAuth)
	}
	if !cfg.TrustForwardedFor || len(cfg.TrustedProxies) != 2 || cfg.TrustedProxies[1].String() != "192.168.1.1/32" {
		t.Errorf("network: %v %v", cfg.TrustForwardedFor, cfg.TrustedProxies)
	}
	bad := writeFile(t, "general_settings:\n  trusted_proxies: [nope]\n  public_urll: x\n  jwt_auth: {bogus: 1}\n")
	if _, err := loadConfig("serve", []string{"--config", bad}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("bad settings: %v", err)
	}
}

func TestModelListValidated(t *testing.T) {
	good := writeFile(t, "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n")
	if _, err := loadConfig("serve", []string{"--config", good}, env(nil), io.Discard); err != nil {
		t.Errorf("valid model_list refused: %v", err)
	}
	bad := writeFile(t, "model_list:\n  - model_name: gpt\n    litellm_params: {}\n")
	if _, err := loadConfig("serve", []string{"--config", bad}, env(nil), io.Discard); err == nil {
		t.Errorf("model_list without a model accepted")
	}
}

// TestOAuthKeysReachOAuthConfig: every general_settings key of gateway.OAuthConfig is
// routed to it, not warned about as unused.
func TestOAuthKeysReachOAuthConfig(t *testing.T) {
	file := writeFile(t, `general_settings:
  public_url: https://gw.example.com
  virtual_key_claim_field: toolgate_key
  idp:
    issuer: https://idp.example.com
`)
	cfg, err := loadConfig("serve", []string{"--config", file}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAuth.JWTKeyClaim != "toolgate_key" || cfg.OAuth.IdP == nil || cfg.OAuth.IdP.Issuer != "https://idp.example.com" {
		t.Errorf("OAuth config: claim %q, idp %+v", cfg.OAuth.JWTKeyClaim, cfg.OAuth.IdP)
	}
	for _, w := range cfg.Warnings {
		if strings.Contains(w, "virtual_key_claim_field") || strings.Contains(w, "idp") {
			t.Errorf("warning for an OAuth key: %s", w)
		}
	}
}

// TestEnvironmentVariablesSection: LiteLLM's environment_variables section supplies the
// variables os.environ/ references and toolgate's own variables read, and the process
// environment wins over it.
func TestEnvironmentVariablesSection(t *testing.T) {
	file := writeFile(t, `
environment_variables:
  PROVIDER_KEY: sk-from-file
  DATABASE_URL: sqlite:/tmp/from-file.db
  TOOLGATE_SHUTDOWN_GRACE: 7s
model_list:
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/PROVIDER_KEY
`)
	tests := []struct {
		name     string
		env      map[string]string
		key, db  string
		warnings int
	}{
		{"file", nil, "sk-from-file", "sqlite:/tmp/from-file.db", 0},
		{"process environment wins", map[string]string{"PROVIDER_KEY": "sk-from-env", "DATABASE_URL": "sqlite:/tmp/env.db"}, "sk-from-env", "sqlite:/tmp/env.db", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig("serve", []string{"--config", file}, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			params, _ := cfg.ModelList[0]["litellm_params"].(map[string]any)
			if params["api_key"] != tc.key || cfg.DatabaseURL != tc.db || cfg.ShutdownGrace != 7*time.Second {
				t.Errorf("got api_key %v, database %q, grace %v; want %q, %q, 7s", params["api_key"], cfg.DatabaseURL, cfg.ShutdownGrace, tc.key, tc.db)
			}
			if len(cfg.Warnings) != tc.warnings {
				t.Errorf("warnings %v", cfg.Warnings)
			}
		})
	}
	bad := writeFile(t, "environment_variables: [A, B]\n")
	if _, err := loadConfig("serve", []string{"--config", bad}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "environment_variables") {
		t.Errorf("a list for environment_variables: got %v, want an error naming the section", err)
	}
}
