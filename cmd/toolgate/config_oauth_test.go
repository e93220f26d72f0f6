package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toolgate/toolgate/store"
)

// TestConfigMCPServerOAuth: an mcp_servers entry takes the OAuth keys POST /v1/mcp/server
// takes (and LiteLLM's config spelling of client_id, client_secret and scopes), and they
// reach the server record the gateway uses.
func TestConfigMCPServerOAuth(t *testing.T) {
	file := writeFile(t, `
mcp_servers:
  crm:
    url: https://crm.example.com/mcp
    auth_type: oauth2
    authorization_url: https://idp.example.com/authorize
    token_url: https://idp.example.com/token
    registration_url: https://idp.example.com/register
    oauth2_flow: authorization_code
    credentials:
      client_id: toolgate
      client_secret: os.environ/CRM_SECRET
      scopes: [read, write]
    delegate_auth_to_upstream: true
  m2m:
    url: https://m2m.example.com/mcp
    auth_type: oauth2
    oauth2_flow: client_credentials
    token_url: https://idp.example.com/token
    client_id: robot
    client_secret: os.environ/M2M_SECRET
    scopes: [mcp]
  pt:
    url: https://pt.example.com/mcp
    oauth_passthrough: true
`)
	cfg, err := loadConfig("serve", []string{"--config", file},
		env(map[string]string{"TOOLGATE_MASTER_KEY": "sk-master-0001", "CRM_SECRET": "crm-s3cret", "M2M_SECRET": "m2m-s3cret"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*store.MCPServer{}
	for _, s := range cfg.MCPServers {
		byName[s.Name] = s
	}
	want := map[string]store.MCPServerOAuth{
		"crm": {ClientID: "toolgate", AuthorizationURL: "https://idp.example.com/authorize", TokenURL: "https://idp.example.com/token",
			RegistrationURL: "https://idp.example.com/register", Scopes: []string{"read", "write"}, GrantType: "authorization_code",
			DelegateAuthToUpstream: true},
		"m2m": {ClientID: "robot", TokenURL: "https://idp.example.com/token", Scopes: []string{"mcp"}, GrantType: "client_credentials"},
		"pt":  {Passthrough: true},
	}
	for name, w := range want {
		srv := byName[name]
		if srv == nil {
			t.Fatalf("server %s not parsed", name)
		}
		if diff := cmp.Diff(w, srv.OAuth); diff != "" {
			t.Errorf("%s OAuth settings (-want +got):\n%s", name, diff)
		}
	}
	for name, secret := range map[string]string{"crm": "crm-s3cret", "m2m": "m2m-s3cret"} {
		var creds map[string]string
		if err := json.Unmarshal(byName[name].Credentials, &creds); err != nil || creds["client_secret"] != secret {
			t.Errorf("%s credentials: %s, %v; want client_secret %s", name, byName[name].Credentials, err, secret)
		}
		if byName[name].AuthType != store.AuthOAuth2 {
			t.Errorf("%s auth_type: %q", name, byName[name].AuthType)
		}
	}
}

func TestConfigMCPServerOAuthRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, entry, want string
	}{
		{"unknown flow", "oauth2_flow: implicit", `mcp_servers.x.oauth2_flow: "implicit" must be authorization_code or client_credentials`},
		{"unknown credentials key", "credentials: {client_idd: a}", "client_idd"},
		{"scopes not a list", "scopes: read", "mcp_servers.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "mcp_servers:\n  x:\n    url: https://x.example.com/mcp\n    auth_type: oauth2\n    "+tc.entry+"\n")
			_, err := loadConfig("serve", []string{"--config", file}, env(map[string]string{"TOOLGATE_MASTER_KEY": "sk-master-0001"}), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
