package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLiteLLMWebhookAlerting: a LiteLLM config, general_settings.alerting: [webhook] with
// the URL in WEBHOOK_URL, gets the soft-budget alert when a key's spend crosses its
// soft_budget, in LiteLLM's webhook fields.
func TestLiteLLMWebhookAlerting(t *testing.T) {
	provider := newFakeOpenAI(t)
	alerts := make(chan map[string]any, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("alert body: %v", err)
		}
		alerts <- a
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	// One completion costs 20 x 0.001 + 30 x 0.002 = 0.08, over the key's 0.05 soft budget.
	yaml := `general_settings:
  master_key: sk-admin-alerts
  database_url: sqlite:` + filepath.Join(dir, "t.db") + `
  alerting: ["webhook"]
  alert_types: ["budget_alerts", "llm_exceptions"]
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: ` + provider.URL + `/v1
      api_key: sk-provider
    model_info:
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
      max_output_tokens: 100
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig("serve", []string{"--config", file, "--host", "127.0.0.1", "--port", "0"},
		env(map[string]string{"WEBHOOK_URL": hook.URL + "/budget"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	m := mustRunMain(t, cfg)
	base := "http://" + m.Addr

	gen := generateKey(t, base, "sk-admin-alerts", `{"key_alias":"alerted","soft_budget":0.05,"max_budget":10}`)
	select {
	case a := <-alerts:
		t.Fatalf("alert before any spend: %v", a)
	default:
	}
	call := chatCompletion(t, base, gen.Key, "python", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if call.status != 200 {
		t.Fatalf("chat: %d %s", call.status, call.body)
	}
	select {
	case a := <-alerts:
		if a["event"] != "soft_budget_crossed" || a["event_group"] != "key" || a["id"] != gen.KeyID ||
			a["soft_budget"] != 0.05 || a["max_budget"] != 10.0 || !near(a["spend"].(float64), 0.08) ||
			a["event_message"] != "Key Budget: Soft Budget Crossed" {
			t.Errorf("alert: %v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no soft-budget alert reached WEBHOOK_URL")
	}
}

// TestAlertingConfig pins how LiteLLM's alerting settings map onto toolgate's budget alert
// webhook: which URL wins, what is only warned about, and what refuses to start.
func TestAlertingConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings string // general_settings and litellm_settings lines
		env      map[string]string
		want     string // litellm_settings.budget_alert_webhook after loading
		warn     string // a warning containing this, if any
		err      string // an error containing this, if any
	}{
		{name: "webhook from WEBHOOK_URL", settings: "general_settings:\n  alerting: [webhook]\n",
			env: map[string]string{"WEBHOOK_URL": "https://hooks.example.com/a"}, want: "https://hooks.example.com/a"},
		{name: "explicit key wins", settings: "general_settings:\n  alerting: [webhook]\nlitellm_settings:\n  budget_alert_webhook: https://hooks.example.com/explicit\n",
			env: map[string]string{"WEBHOOK_URL": "https://hooks.example.com/a"}, want: "https://hooks.example.com/explicit", warn: "WEBHOOK_URL is not used"},
		{name: "explicit key alone", settings: "general_settings:\n  alerting: [webhook]\nlitellm_settings:\n  budget_alert_webhook: https://hooks.example.com/explicit\n",
			want: "https://hooks.example.com/explicit"},
		{name: "WEBHOOK_URL without alerting is not used", settings: "general_settings:\n  alerting: []\n",
			env: map[string]string{"WEBHOOK_URL": "https://hooks.example.com/a"}},
		{name: "slack is warned about", settings: "general_settings:\n  alerting: [slack, webhook]\n",
			env: map[string]string{"WEBHOOK_URL": "https://hooks.example.com/a"}, want: "https://hooks.example.com/a", warn: `"slack" is not supported`},
		{name: "alert_types without budget_alerts", settings: "general_settings:\n  alerting: [webhook]\n  alert_types: [llm_exceptions]\n",
			env: map[string]string{"WEBHOOK_URL": "https://hooks.example.com/a"}, warn: "leaves budget_alerts out"},
		{name: "webhook without a URL", settings: "general_settings:\n  alerting: [webhook]\n", err: "WEBHOOK_URL is not set"},
		{name: "WEBHOOK_URL not a URL", settings: "general_settings:\n  alerting: [webhook]\n",
			env: map[string]string{"WEBHOOK_URL": "hooks.example.com/secret-token"}, err: "WEBHOOK_URL is not an absolute http or https URL"},
		{name: "alerting not a list", settings: "general_settings:\n  alerting: {webhook: true}\n", err: "general_settings.alerting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, tc.settings)
			cfg, err := loadConfig("serve", []string{"--config", file}, env(tc.env), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "secret-token") {
					t.Errorf("error echoes the webhook URL: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := cfg.LiteLLMSettings["budget_alert_webhook"].(string); got != tc.want {
				t.Errorf("budget_alert_webhook: got %q, want %q", got, tc.want)
			}
			warnings := strings.Join(cfg.Warnings, "\n")
			if tc.warn == "" && warnings != "" || !strings.Contains(warnings, tc.warn) {
				t.Errorf("warnings: got %q, want one containing %q", warnings, tc.warn)
			}
			if strings.Contains(warnings, "hooks.example.com") {
				t.Errorf("warnings echo a webhook URL: %q", warnings)
			}
		})
	}
}
