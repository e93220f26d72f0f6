package llm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// serveModels answers /v1/models with the model names the caller may use.
func (s *Server) serveModels(w http.ResponseWriter, r *http.Request) error {
	c := CallerFrom(r.Context())
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := []model{}
	for _, n := range s.router.modelNames() {
		if c.MayUse(n) {
			data = append(data, model{ID: n, Object: "model", Created: 1677610602, OwnedBy: "openai"})
		}
	}
	for alias, target := range s.router.listedAliases() {
		if c.MayUse(alias) || c.MayUse(target) {
			data = append(data, model{ID: alias, Object: "model", Created: 1677610602, OwnedBy: "openai"})
		}
	}
	slices.SortFunc(data, func(a, b model) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
	return nil
}

// modelRequest is the body of /model/new and /model/update.
type modelRequest struct {
	ModelName     string         `json:"model_name"`
	LiteLLMParams map[string]any `json:"litellm_params"`
	ModelInfo     map[string]any `json:"model_info"`
}

func (s *Server) admin(r *http.Request) error {
	c := CallerFrom(r.Context())
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	if !c.Admin {
		return &requestError{status: http.StatusForbidden, msg: "only proxy admins may manage models"}
	}
	if s.cfg.ModelStore == nil {
		return &requestError{status: http.StatusNotFound, msg: "model management is off: it needs TOOLGATE_SALT_KEY (or a configured master key) to seal model credentials"}
	}
	return nil
}

// toModel splits a model config into the stored record: secrets sealed apart.
func (s *Server) toModel(mc ModelConfig) (*store.Model, error) {
	params, secrets := map[string]any{}, map[string]any{}
	for k, v := range mc.LiteLLMParams {
		if secretParams[k] {
			secrets[k] = v
		} else {
			params[k] = v
		}
	}
	m := &store.Model{ID: str(mc.ModelInfo["id"]), ModelName: mc.ModelName}
	var err error
	if m.Params, err = json.Marshal(params); err != nil {
		return nil, err
	}
	info := mc.ModelInfo
	if info == nil {
		info = map[string]any{}
	}
	if m.ModelInfo, err = json.Marshal(info); err != nil {
		return nil, err
	}
	if len(secrets) > 0 {
		b, err := json.Marshal(secrets)
		if err != nil {
			return nil, err
		}
		if m.Credentials, err = s.cfg.Sealer.Seal(b); err != nil {
			return nil, fmt.Errorf("seal model credentials: %w", err)
		}
	}
	return m, nil
}

// configOf opens a stored model back into a model config.
func (s *Server) configOf(m *store.Model) (ModelConfig, error) {
	mc := ModelConfig{ModelName: m.ModelName, LiteLLMParams: map[string]any{}, ModelInfo: map[string]any{}}
	if len(m.Params) > 0 {
		if err := json.Unmarshal(m.Params, &mc.LiteLLMParams); err != nil {
			return mc, fmt.Errorf("model %s params: %w", m.ID, err)
		}
	}
	if len(m.ModelInfo) > 0 {
		if err := json.Unmarshal(m.ModelInfo, &mc.ModelInfo); err != nil {
			return mc, fmt.Errorf("model %s info: %w", m.ID, err)
		}
	}
	if len(m.Credentials) > 0 {
		b, err := s.cfg.Sealer.Open(m.Credentials)
		if err != nil {
			return mc, fmt.Errorf("open model %s credentials: %w", m.ID, err)
		}
		var sec map[string]any
		if err := json.Unmarshal(b, &sec); err != nil {
			return mc, fmt.Errorf("model %s credentials: %w", m.ID, err)
		}
		for k, v := range sec {
			mc.LiteLLMParams[k] = v
		}
	}
	if mc.ModelInfo == nil {
		mc.ModelInfo = map[string]any{}
	}
	mc.ModelInfo["id"] = m.ID
	return mc, nil
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		return badRequest("", "request body must be JSON: "+err.Error())
	}
	return nil
}

func (s *Server) serveModelNew(w http.ResponseWriter, r *http.Request) error {
	if err := s.admin(r); err != nil {
		return err
	}
	var req modelRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	mc := ModelConfig{ModelName: req.ModelName, LiteLLMParams: req.LiteLLMParams, ModelInfo: req.ModelInfo}
	if mc.ModelInfo == nil {
		mc.ModelInfo = map[string]any{}
	}
	if str(mc.ModelInfo["id"]) == "" {
		mc.ModelInfo["id"] = budget.NewID()
	}
	if _, err := s.deployment(mc, "db"); err != nil { // validates
		return badRequest("litellm_params", err.Error())
	}
	m, err := s.toModel(mc)
	if err != nil {
		return err
	}
	if c := CallerFrom(r.Context()); c != nil {
		m.CreatedBy = c.UserID
	}
	if err := s.cfg.ModelStore.CreateModel(r.Context(), m); err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.modelJSON(mc, "db"))
	return nil
}

func (s *Server) serveModelUpdate(w http.ResponseWriter, r *http.Request) error {
	if err := s.admin(r); err != nil {
		return err
	}
	var req modelRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	id := str(req.ModelInfo["id"])
	if id == "" {
		return badRequest("model_info.id", "model_info.id is required")
	}
	m, err := s.cfg.ModelStore.Model(r.Context(), id)
	if err != nil {
		return err
	}
	mc, err := s.configOf(m)
	if err != nil {
		return err
	}
	if req.ModelName != "" {
		mc.ModelName = req.ModelName
	}
	for k, v := range req.LiteLLMParams {
		if v == nil {
			delete(mc.LiteLLMParams, k)
		} else {
			mc.LiteLLMParams[k] = v
		}
	}
	for k, v := range req.ModelInfo {
		mc.ModelInfo[k] = v
	}
	if _, err := s.deployment(mc, "db"); err != nil {
		return badRequest("litellm_params", err.Error())
	}
	nm, err := s.toModel(mc)
	if err != nil {
		return err
	}
	nm.CreatedBy, nm.CreatedAt = m.CreatedBy, m.CreatedAt
	if err := s.cfg.ModelStore.UpdateModel(r.Context(), nm); err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.modelJSON(mc, "db"))
	return nil
}

func (s *Server) serveModelDelete(w http.ResponseWriter, r *http.Request) error {
	if err := s.admin(r); err != nil {
		return err
	}
	var req struct {
		ID string `json:"id"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return badRequest("id", "id is required")
	}
	if err := s.cfg.ModelStore.DeleteModel(r.Context(), req.ID); err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "Model deleted successfully", "id": req.ID})
	return nil
}

// modelJSON renders a deployment in /model/info's shape, secrets left out.
func (s *Server) modelJSON(mc ModelConfig, source string) map[string]any {
	params := map[string]any{}
	for k, v := range mc.LiteLLMParams {
		if !secretParams[k] {
			params[k] = v
		}
	}
	info := map[string]any{}
	for k, v := range mc.ModelInfo {
		info[k] = v
	}
	info["db_model"] = source == "db"
	return map[string]any{"model_name": mc.ModelName, "litellm_params": params, "model_info": info}
}

func (s *Server) serveModelInfo(w http.ResponseWriter, r *http.Request) error {
	c := CallerFrom(r.Context())
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	id := r.URL.Query().Get("litellm_model_id")
	data := []map[string]any{}
	for _, d := range s.router.all() {
		if (id != "" && d.ID != id) || !c.MayUse(d.ModelName) {
			continue
		}
		info := map[string]any{}
		for k, v := range d.ModelInfo {
			info[k] = v
		}
		info["id"] = d.ID
		info["db_model"] = d.Source == "db"
		info["mode"] = d.Price.Mode
		info["litellm_provider"] = d.Provider
		info["input_cost_per_token"] = d.Price.InputCostPerToken
		info["output_cost_per_token"] = d.Price.OutputCostPerToken
		info["max_output_tokens"] = d.Price.MaxOutputTokens
		info["max_input_tokens"] = d.Price.MaxInputTokens
		data = append(data, map[string]any{"model_name": d.ModelName, "litellm_params": d.Params, "model_info": info})
	}
	if id != "" && len(data) == 0 {
		return store.ErrNotFound
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
	return nil
}

// spendLogJSON is one row of /spend/logs in LiteLLM's field names.
type spendLogJSON struct {
	RequestID        string          `json:"request_id"`
	CallType         string          `json:"call_type"`
	APIKey           string          `json:"api_key"`
	KeyAlias         string          `json:"key_alias,omitempty"`
	Spend            float64         `json:"spend"`
	TotalTokens      int64           `json:"total_tokens"`
	PromptTokens     int64           `json:"prompt_tokens"`
	CompletionTokens int64           `json:"completion_tokens"`
	StartTime        time.Time       `json:"startTime"`
	EndTime          time.Time       `json:"endTime"`
	Model            string          `json:"model"`
	User             string          `json:"user"`
	TeamID           string          `json:"team_id"`
	OrgID            string          `json:"organization_id"`
	EndUser          string          `json:"end_user"`
	MCPTool          string          `json:"mcp_namespaced_tool_name,omitempty"`
	Status           string          `json:"status"`
	RequestTags      []string        `json:"request_tags"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
}

// serveSpendLogs answers /spend/logs. Filters: request_id, api_key (key hash), key_id,
// user_id, team_id, organization_id, start_date and end_date (YYYY-MM-DD or RFC 3339),
// limit. Non-admins see only their own key's rows.
func (s *Server) serveSpendLogs(w http.ResponseWriter, r *http.Request) error {
	c := CallerFrom(r.Context())
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	if s.cfg.SpendReader == nil {
		return &requestError{status: http.StatusNotFound, msg: "spend logs need a database"}
	}
	q := r.URL.Query()
	f := store.SpendFilter{RequestID: q.Get("request_id"), KeyID: q.Get("key_id"), UserID: q.Get("user_id"),
		TeamID: q.Get("team_id"), OrgID: q.Get("organization_id")}
	var err error
	if f.Start, err = parseDate(q.Get("start_date"), false); err != nil {
		return badRequest("start_date", err.Error())
	}
	if f.End, err = parseDate(q.Get("end_date"), true); err != nil {
		return badRequest("end_date", err.Error())
	}
	if l := q.Get("limit"); l != "" {
		if _, err := fmt.Sscanf(l, "%d", &f.Limit); err != nil || f.Limit < 0 {
			return badRequest("limit", "limit must be a non-negative integer")
		}
	}
	hash := q.Get("api_key")
	if !c.Admin {
		if c.KeyID == "" {
			return &requestError{status: http.StatusForbidden, msg: "only keys and admins may read spend logs"}
		}
		f.KeyID, hash = c.KeyID, ""
	}
	logs, err := s.cfg.SpendReader.SpendLogs(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]spendLogJSON, 0, len(logs))
	for _, l := range logs {
		if hash != "" && l.KeyHash != hash {
			continue
		}
		tags := l.Tags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, spendLogJSON{RequestID: l.RequestID, CallType: l.CallType, APIKey: l.KeyHash, KeyAlias: l.KeyAlias,
			Spend: l.Spend, TotalTokens: l.TotalTokens, PromptTokens: l.PromptTokens, CompletionTokens: l.CompletionTokens,
			StartTime: l.StartTime, EndTime: l.EndTime, Model: l.Model, User: l.UserID, TeamID: l.TeamID, OrgID: l.OrgID,
			EndUser: l.EndUser, MCPTool: l.MCPTool, Status: l.Status, RequestTags: tags, Metadata: l.Metadata})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func parseDate(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want YYYY-MM-DD or RFC 3339, got %q", s)
	}
	if end {
		t = t.Add(24 * time.Hour) // end_date is inclusive
	}
	return t, nil
}
