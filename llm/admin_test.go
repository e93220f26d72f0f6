package llm_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

func TestModelManagement(t *testing.T) {
	up := newFakeOpenAI(t)
	db := newSQLite(t)
	h := newHarness(t, storeOpts(db, harnessOpts{models: []llm.ModelConfig{model("cfg", up.URL, nil)}, modelStore: db}))
	admin := []string{"x-test-admin", "1"}

	newBody := map[string]any{"model_name": "added", "litellm_params": map[string]any{"model": "openai/up-added", "api_base": up.URL, "api_key": "sk-very-secret"},
		"model_info": map[string]any{"id": "m1", "input_cost_per_token": 0.001}}
	if resp, body := h.post("/model/new", newBody); resp.StatusCode != 403 {
		t.Errorf("non-admin /model/new: %d %s", resp.StatusCode, body)
	}
	resp, body := h.post("/model/new", newBody, admin...)
	if resp.StatusCode != 200 || strings.Contains(string(body), "sk-very-secret") {
		t.Fatalf("/model/new: %d %s", resp.StatusCode, body)
	}
	stored, err := db.Model(t.Context(), "m1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored.Params)+string(stored.Credentials), "sk-very-secret") || len(stored.Credentials) == 0 {
		t.Errorf("credentials not sealed: %+v", stored)
	}
	if resp, body := h.post("/v1/chat/completions", chat("added")); resp.StatusCode != 200 || up.lastAuth != "Bearer sk-very-secret" || up.body()["model"] != "up-added" {
		t.Fatalf("call added model: %d %s (auth %q)", resp.StatusCode, body, up.lastAuth)
	}

	resp, body = h.get("/model/info")
	var info struct {
		Data []struct {
			ModelName     string         `json:"model_name"`
			LiteLLMParams map[string]any `json:"litellm_params"`
			ModelInfo     map[string]any `json:"model_info"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &info); err != nil || resp.StatusCode != 200 || len(info.Data) != 2 {
		t.Fatalf("/model/info: %d %s", resp.StatusCode, body)
	}
	for _, d := range info.Data {
		if _, ok := d.LiteLLMParams["api_key"]; ok {
			t.Errorf("/model/info shows api_key for %s", d.ModelName)
		}
		if d.ModelName == "added" && (d.ModelInfo["db_model"] != true || d.ModelInfo["id"] != "m1") {
			t.Errorf("added model info %v", d.ModelInfo)
		}
	}
	if resp, _ := h.get("/model/info?litellm_model_id=m1"); resp.StatusCode != 200 {
		t.Errorf("info by id: %d", resp.StatusCode)
	}

	upd := map[string]any{"model_name": "renamed", "model_info": map[string]any{"id": "m1"}, "litellm_params": map[string]any{"rpm": 10}}
	if resp, body := h.post("/model/update", upd, admin...); resp.StatusCode != 200 {
		t.Fatalf("/model/update: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.post("/v1/chat/completions", chat("renamed")); resp.StatusCode != 200 || up.lastAuth != "Bearer sk-very-secret" {
		t.Fatalf("renamed model keeps its key: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.post("/v1/chat/completions", chat("added")); resp.StatusCode != 400 {
		t.Errorf("old name still served: %d", resp.StatusCode)
	}
	if resp, body := h.post("/model/delete", map[string]any{"id": "m1"}, admin...); resp.StatusCode != 200 {
		t.Fatalf("/model/delete: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.post("/model/delete", map[string]any{"id": "m1"}, admin...); resp.StatusCode != 404 {
		t.Errorf("second delete: %d", resp.StatusCode)
	}
	if resp, _ := h.post("/v1/chat/completions", chat("renamed")); resp.StatusCode != 400 {
		t.Errorf("deleted model still served: %d", resp.StatusCode)
	}
	if resp, body := h.post("/model/new", map[string]any{"model_name": "x", "litellm_params": map[string]any{}}, admin...); resp.StatusCode != 400 {
		t.Errorf("invalid model accepted: %d %s", resp.StatusCode, body)
	}
}

func TestSpendLogsRoute(t *testing.T) {
	up := newFakeOpenAI(t)
	db := newSQLite(t)
	h := newHarness(t, storeOpts(db, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}}))
	for range 2 {
		if resp, body := h.post("/v1/chat/completions", chat("gpt", "user", "alice")); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	other := *h.caller
	h.caller = &llm.Caller{KeyID: "key2", KeyHash: "hash2", UserID: "user2"}
	if resp, _ := h.post("/v1/chat/completions", chat("gpt")); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	h.caller = &other
	if err := h.spend.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	type row struct {
		RequestID   string   `json:"request_id"`
		APIKey      string   `json:"api_key"`
		User        string   `json:"user"`
		EndUser     string   `json:"end_user"`
		Spend       float64  `json:"spend"`
		TotalTokens int64    `json:"total_tokens"`
		RequestTags []string `json:"request_tags"`
		StartTime   string   `json:"startTime"`
	}
	get := func(q string, admin bool) []row {
		t.Helper()
		hdr := []string{}
		if admin {
			hdr = []string{"x-test-admin", "1"}
		}
		resp, body := h.get("/spend/logs"+q, hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("/spend/logs%s: %d %s", q, resp.StatusCode, body)
		}
		var rows []row
		if err := json.Unmarshal(body, &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if rows := get("", false); len(rows) != 2 || rows[0].APIKey != "hash1" || rows[0].EndUser != "alice" || rows[0].TotalTokens != 20 {
		t.Errorf("own rows %+v", rows)
	}
	if rows := get("?user_id=user2", false); len(rows) != 0 {
		t.Errorf("a key read another key's rows: %+v", rows)
	}
	if rows := get("", true); len(rows) != 3 {
		t.Errorf("admin rows %d, want 3", len(rows))
	}
	if rows := get("?user_id=user2", true); len(rows) != 1 {
		t.Errorf("admin user_id filter %d rows", len(rows))
	}
	if rows := get("?api_key=hash2", true); len(rows) != 1 {
		t.Errorf("admin api_key filter %d rows", len(rows))
	}
	tomorrow := time.Now().Add(48 * time.Hour).Format(time.DateOnly)
	if rows := get("?start_date="+tomorrow, true); len(rows) != 0 {
		t.Errorf("start_date filter %d rows", len(rows))
	}
	one := get("", true)[0].RequestID
	if rows := get("?request_id="+one, true); len(rows) != 1 {
		t.Errorf("request_id filter %d rows", len(rows))
	}
	if resp, _ := h.get("/spend/logs?start_date=yesterday", "x-test-admin", "1"); resp.StatusCode != 400 {
		t.Errorf("bad date: %d", resp.StatusCode)
	}
	_ = store.CallCompletion
}

func TestHygieneOverHTTP(t *testing.T) {
	up := newFakeOpenAI(t)
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{model("gpt", up.URL, nil)}})
	for _, tc := range []struct {
		name, body, param string
	}{
		{"api_base", `{"model":"gpt","messages":[],"api_base":"https://evil.example"}`, "api_base"},
		{"base_url", `{"model":"gpt","messages":[],"base_url":"https://evil.example"}`, "base_url"},
		{"api_key", `{"model":"gpt","messages":[],"api_key":"sk-mine"}`, "api_key"},
		{"aws", `{"model":"gpt","messages":[],"aws_secret_access_key":"x"}`, "aws_secret_access_key"},
		{"aws endpoint", `{"model":"gpt","messages":[],"aws_bedrock_runtime_endpoint":"x"}`, "aws_bedrock_runtime_endpoint"},
		{"vertex", `{"model":"gpt","messages":[],"vertex_credentials":"{}"}`, "vertex_credentials"},
		{"pricing", `{"model":"gpt","messages":[],"input_cost_per_token":0}`, "input_cost_per_token"},
		{"metadata", `{"model":"gpt","messages":[],"metadata":{"api_base":"x"}}`, "metadata.api_base"},
		{"metadata string", `{"model":"gpt","messages":[],"metadata":"{\"api_key\":\"x\"}"}`, "metadata.api_key"},
		{"litellm_metadata", `{"model":"gpt","messages":[],"litellm_metadata":{"output_cost_per_token":0}}`, "litellm_metadata.output_cost_per_token"},
	} {
		resp, body := h.post("/v1/chat/completions", tc.body)
		if typ, param, _, _ := errorOf(t, body); resp.StatusCode != 400 || param != tc.param || typ != "invalid_request_error" {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	if up.calls.Load() != 0 {
		t.Error("a refused request reached the provider")
	}
	// Allowed for a key with client-side credentials: api_base and api_key replace the
	// deployment's and are not forwarded in the body.
	other := newFakeOpenAI(t)
	h.caller.AllowClientSideCredentials = true
	resp, body := h.post("/v1/chat/completions", chat("gpt", "api_base", other.URL, "api_key", "sk-mine"))
	if resp.StatusCode != 200 || other.calls.Load() != 1 || other.lastAuth != "Bearer sk-mine" {
		t.Fatalf("client-side credentials: %d %s", resp.StatusCode, body)
	}
	if _, ok := other.body()["api_key"]; ok {
		t.Error("api_key forwarded in the body")
	}
}
