package llm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ModelConfig is one entry of LiteLLM's model_list:
//
//   - model_name: gpt-4o
//     litellm_params:
//     model: openai/gpt-4o          # provider/name
//     api_base: https://...         # optional
//     api_key: os.environ/OPENAI_API_KEY
//     api_version: 2024-10-21       # azure
//     rpm: 600                      # also a routing weight
//     tpm: 100000
//     max_parallel_requests: 10     # calls in flight at once
//     order: 1                      # priority: lower orders first, others when they fail
//     weight: 2
//     timeout: 30                   # seconds
//     model_info:
//     id: my-deployment-id
//     base_model: gpt-4o            # cost-map name when model is an azure deployment
//     input_cost_per_token: 0.000001
//     output_cost_per_token: 0.000002
//     max_output_tokens: 4096
//     mode: chat
type ModelConfig struct {
	ModelName     string         `json:"model_name" yaml:"model_name"`
	LiteLLMParams map[string]any `json:"litellm_params" yaml:"litellm_params"`
	ModelInfo     map[string]any `json:"model_info,omitempty" yaml:"model_info,omitempty"`
	// RPM and TPM may also sit beside litellm_params, as in LiteLLM's examples.
	RPM int64 `json:"rpm,omitempty" yaml:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty" yaml:"tpm,omitempty"`
}

// ModelConfigsFromMaps converts model_list entries decoded generically (from YAML or JSON)
// to ModelConfigs.
func ModelConfigsFromMaps(list []map[string]any) ([]ModelConfig, error) {
	b, err := json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("model_list: %w", err)
	}
	var out []ModelConfig
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("model_list: %w", err)
	}
	return out, nil
}

// secretParams are litellm_params that hold credentials: sealed at rest, never returned.
var secretParams = map[string]bool{
	"api_key": true, "aws_access_key_id": true, "aws_secret_access_key": true, "aws_session_token": true,
	"vertex_credentials": true, "azure_ad_token": true, "client_secret": true,
}

// Deployment is one upstream model behind a public model name. Several deployments may
// share a ModelName; the Router picks among them.
type Deployment struct {
	ID           string // model_info.id, or a stable hash of the config entry
	ModelName    string // public name callers ask for
	Provider     string // "openai", "azure", "anthropic", or another OpenAI-compatible prefix
	Model        string // the provider's model (or Azure deployment) name
	APIBase      string
	APIKey       string
	APIVersion   string
	Organization string
	RPM, TPM     int64 // per-deployment limits; also the shuffle weight
	MaxParallel  int64 // calls in flight at once (litellm_params.max_parallel_requests); 0: no limit
	// Order is the deployment's priority (litellm_params.order): the router picks among the
	// lowest orders that can take a call, then the next; 0 (none) comes after every order.
	Order   int64
	Weight  float64 // explicit shuffle weight; 0: use RPM, then TPM, then 1
	Timeout time.Duration
	Price   Price
	Priced  bool   // Price came from the cost map or model_info
	Source  string // "config" or "db"

	Params    map[string]any // litellm_params without secrets (for /model/info)
	ModelInfo map[string]any

	prov provider

	// Computed once by Server.deployment, for the hot path (a copy made for client-side
	// credentials leaves them nil and they are computed per call).
	modelJSON json.RawMessage // Model as a JSON string
	auth      http.Header     // the provider call's credential header, shared: never modified
	logMeta   [2][]byte       // spend log metadata for a call to ModelName, not streamed and streamed
	direct    bool            // reachable without a proxy: non-streaming calls may use fasthttp

	searchWarned atomic.Bool // the log has said once that its provider-run tools cost nothing

	inflight  atomic.Int64
	latency   atomic.Int64 // EWMA of successful call latency, ns; 0: none yet
	fails     atomic.Int64 // consecutive failures
	coolUntil atomic.Int64 // unix ns
}

// Env looks up an environment variable for api_key: os.environ/NAME values.
type Env func(name string) (string, bool)

// newDeployment builds a Deployment from a model_list entry.
func newDeployment(mc ModelConfig, costs *CostMap, env Env) (*Deployment, error) {
	if mc.ModelName == "" {
		return nil, fmt.Errorf("model_list entry: model_name is required")
	}
	p := mc.LiteLLMParams
	model := str(p["model"])
	if model == "" {
		return nil, fmt.Errorf("model %s: litellm_params.model is required", mc.ModelName)
	}
	d := &Deployment{ModelName: mc.ModelName, Params: map[string]any{}, ModelInfo: mc.ModelInfo}
	d.Provider, d.Model, _ = strings.Cut(model, "/")
	if d.Model == "" {
		d.Provider, d.Model = "openai", model
	}
	if cp := str(p["custom_llm_provider"]); cp != "" {
		d.Provider, d.Model = cp, model
	}
	for k, v := range p {
		if !secretParams[k] {
			d.Params[k] = v
		}
	}
	var err error
	resolve := func(k string) string {
		v := str(p[k])
		if name, ok := strings.CutPrefix(v, "os.environ/"); ok {
			r, found := env(name)
			if !found && err == nil {
				err = fmt.Errorf("model %s: %s: environment variable %s is not set", mc.ModelName, k, name)
			}
			return r
		}
		return v
	}
	d.APIBase = resolve("api_base")
	if d.APIBase == "" {
		d.APIBase = resolve("base_url")
	}
	d.APIKey = resolve("api_key")
	d.APIVersion = resolve("api_version")
	d.Organization = resolve("organization")
	if err != nil {
		return nil, err
	}
	d.RPM, d.TPM = num(p["rpm"]), num(p["tpm"])
	if d.RPM == 0 {
		d.RPM = mc.RPM
	}
	if d.TPM == 0 {
		d.TPM = mc.TPM
	}
	if d.MaxParallel = num(p["max_parallel_requests"]); d.MaxParallel < 0 {
		return nil, fmt.Errorf("model %s: litellm_params.max_parallel_requests must not be negative", mc.ModelName)
	}
	if d.Order = num(p["order"]); d.Order < 0 {
		return nil, fmt.Errorf("model %s: litellm_params.order must not be negative", mc.ModelName)
	}
	d.Weight = fnum(p["weight"])
	if t := fnum(p["timeout"]); t > 0 {
		d.Timeout = time.Duration(t * float64(time.Second))
	}
	switch d.Provider {
	case "anthropic":
		d.prov = nil // set by the router, which owns the HTTP client
	case "azure":
		if d.APIBase == "" {
			return nil, fmt.Errorf("model %s: azure deployments need api_base", mc.ModelName)
		}
	case "hosted_vllm", "openai_like", "custom_openai", "vllm", "lm_studio":
		if d.APIBase == "" {
			return nil, fmt.Errorf("model %s: %s deployments need api_base", mc.ModelName, d.Provider)
		}
	}
	names := []string{str(mc.ModelInfo["base_model"]), model, d.Model}
	d.Price, d.Priced = costs.Lookup(names...)
	if d.Price.CodeInterpreterCostPerSession == 0 { // the provider's container price ("openai/container")
		if c, ok := costs.Lookup(d.Provider + "/container"); ok {
			d.Price.CodeInterpreterCostPerSession = c.CodeInterpreterCostPerSession
		}
	}
	if d.Price, err = d.Price.withOverrides(p); err != nil {
		return nil, fmt.Errorf("model %s: %w", mc.ModelName, err)
	}
	if d.Price, err = d.Price.withOverrides(mc.ModelInfo); err != nil {
		return nil, fmt.Errorf("model %s: %w", mc.ModelName, err)
	}
	if p["input_cost_per_token"] != nil || mc.ModelInfo["input_cost_per_token"] != nil || mc.ModelInfo["input_cost_per_image"] != nil {
		d.Priced = true
	}
	d.ID = str(mc.ModelInfo["id"])
	if d.ID == "" {
		h := sha256.New()
		b, _ := json.Marshal(mc)
		h.Write(b)
		d.ID = hex.EncodeToString(h.Sum(nil))[:16]
	}
	return d, nil
}

// cooling reports whether d is cooling down at now.
func (d *Deployment) cooling(now time.Time) bool { return d.coolUntil.Load() > now.UnixNano() }

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	default:
		return fmt.Sprint(x)
	}
}

func fnum(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case float32:
		return float64(x)
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return 0
}

func num(v any) int64 { return int64(fnum(v)) }

// UnknownRouterSettings returns, sorted, the keys of a router_settings section that
// RouterSettings does not read, leaving out those in also (keys the caller reads itself,
// such as redis_url): LiteLLM settings toolgate does not implement, or misspellings.
func UnknownRouterSettings(m map[string]any, also ...string) []string {
	known := map[string]bool{}
	t := reflect.TypeFor[RouterSettings]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	var out []string
	for k := range m {
		if !known[k] && !slices.Contains(also, k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// RouterSettingsFromMap converts a generically decoded router_settings section (YAML or
// JSON) to RouterSettings. Keys it does not know (redis_url and the like) are ignored.
func RouterSettingsFromMap(m map[string]any) (RouterSettings, error) {
	var rs RouterSettings
	if len(m) == 0 {
		return rs, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return rs, fmt.Errorf("router_settings: %w", err)
	}
	if err := json.Unmarshal(b, &rs); err != nil {
		return rs, fmt.Errorf("router_settings: %w", err)
	}
	return rs, nil
}

// Validate reports every problem with the model list and router settings at once, as New
// would. It does no I/O.
func (c Config) Validate() error {
	s, err := New(c)
	if err != nil {
		return err
	}
	return s.Close()
}

// modelField is Model as the JSON string a request body's "model" gets: cached for the
// router's deployments, made here for a copy with client-side credentials.
func (d *Deployment) modelField() json.RawMessage {
	if d.modelJSON != nil {
		return d.modelJSON
	}
	m, _ := json.Marshal(d.Model)
	return m
}
