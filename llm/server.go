package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpproxy"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// Sealer encrypts model credentials at rest (internal/seal.Box satisfies it). It must be
// safe for concurrent use; Open fails on data it did not seal.
type Sealer interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// SpendWriter queues spend log rows (a *budget.SpendLog satisfies it). Write must be safe
// for concurrent use; it may block (back-pressure), for a bounded time, and returns
// ctx.Err() if ctx ends first.
type SpendWriter interface {
	Write(ctx context.Context, l *store.SpendLog) error
}

// SpendReader reads spend log rows for /spend/logs (store.SpendStore satisfies it), newest
// first. It must be safe for concurrent use; no match is an empty result, not an error.
type SpendReader interface {
	SpendLogs(ctx context.Context, f store.SpendFilter) ([]*store.SpendLog, error)
}

// Config configures a Server. The zero value serves no models.
type Config struct {
	// Models are the config-file deployments (model_list). They are read-only through the
	// API.
	Models []ModelConfig
	// Router are the router_settings. The zero value is documented on RouterSettings.
	Router RouterSettings
	// Costs prices models. If nil, DefaultCostMap.
	Costs *CostMap
	// Budget enforces budgets. If nil, calls are not reserved or charged against budgets.
	Budget *budget.Manager
	// Limiter enforces the callers' and deployments' rate limits. If nil, an in-process
	// budget.MemoryLimiter.
	Limiter budget.Limiter
	// SpendLog receives one row per call. If nil, calls are not logged.
	SpendLog SpendWriter
	// SpendReader serves /spend/logs. If nil, the route answers 404.
	SpendReader SpendReader
	// ModelStore persists API-added models (/model/new...). If nil, those routes answer
	// 404 and only Models are served.
	ModelStore store.ModelStore
	// Sealer seals API-added models' credentials. Required with ModelStore.
	Sealer Sealer
	// ModelRefresh is how often API-added models are re-read, so that several replicas
	// converge. If zero, 30 seconds.
	ModelRefresh time.Duration
	// HTTPClient calls providers. If nil, a client with no overall timeout (the router's
	// timeouts apply) and pooled connections.
	HTTPClient *http.Client
	// Env resolves api_key: os.environ/NAME. If nil, os.LookupEnv.
	Env Env
	// MaxBodyBytes limits request bodies. If zero, 32 MiB.
	MaxBodyBytes int64
	// Logger receives errors. If nil, logs are discarded.
	Logger *slog.Logger
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// ResponseIDKey signs the response IDs the gateway gives Responses API callers
	// (response_ids.go). Replicas must share it, and it must outlive restarts, for an ID to
	// work everywhere and later. If empty, a random key: IDs then work only on this process.
	ResponseIDKey []byte
	// TracerProvider, if set, traces each provider call (a client span per attempt, after
	// OpenTelemetry's GenAI conventions) and sends its traceparent to the provider.
	TracerProvider trace.TracerProvider
}

// Server serves the OpenAI-compatible LLM endpoints, model management and spend logs. It
// is an http.Handler; callers must put a Caller in each request's context (WithCaller).
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	costs   *CostMap
	router  *Router
	limiter budget.Limiter
	openai  *openAI
	anth    *anthropic
	mux     *http.ServeMux
	static  []*Deployment
	ids     responseIDs
	ownTr   *http.Transport                  // the transport New made, closed by Close; nil with Config.HTTPClient
	proxy   func(*url.URL) (*url.URL, error) // HTTP_PROXY, HTTPS_PROXY, NO_PROXY as New found them

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and builds the Server. It does no I/O: call Start to load API-added
// models.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, costs: cfg.Costs, limiter: cfg.Limiter, ids: newResponseIDs(cfg.ResponseIDKey)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.costs == nil {
		s.costs = DefaultCostMap()
	}
	if s.limiter == nil {
		s.limiter = budget.NewMemoryLimiter(s.now)
	}
	if s.cfg.Env == nil {
		s.cfg.Env = os.LookupEnv
	}
	if s.cfg.MaxBodyBytes <= 0 {
		s.cfg.MaxBodyBytes = 32 << 20
	}
	if s.cfg.ModelRefresh <= 0 {
		s.cfg.ModelRefresh = 30 * time.Second
	}
	if cfg.ModelStore != nil && cfg.Sealer == nil {
		return nil, errors.New("llm: Config.Sealer is required with ModelStore")
	}
	tr := &transport{client: cfg.HTTPClient}
	// The proxy settings are read once, here, for both clients: a deployment either goes
	// through a proxy (net/http, always) or straight to the provider.
	s.proxy = httpproxy.FromEnvironment().ProxyFunc()
	if tr.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		t.ResponseHeaderTimeout = 0
		t.Proxy = func(r *http.Request) (*url.URL, error) { return s.proxy(r.URL) }
		tr.client = &http.Client{Transport: t}
		tr.fast = newFastClient()
		s.ownTr = t
	}
	s.openai = &openAI{tr: tr}
	s.anth = &anthropic{tr: tr}
	var errs []error
	r, err := newRouter(cfg.Router, s.limiter, s.now)
	if err != nil {
		errs = append(errs, err)
		r, _ = newRouter(RouterSettings{}, s.limiter, s.now)
	}
	if cfg.TracerProvider != nil {
		r.tracer = cfg.TracerProvider.Tracer("github.com/toolgate/toolgate/llm")
	}
	s.router = r
	for _, mc := range cfg.Models {
		d, err := s.deployment(mc, "config")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !d.Priced {
			s.log.Warn("model has no price: calls to it cost nothing against budgets; set model_info.input_cost_per_token and output_cost_per_token",
				"model_name", d.ModelName, "model", d.Provider+"/"+d.Model)
		}
		s.static = append(s.static, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.router.set(s.static)
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

func (s *Server) deployment(mc ModelConfig, source string) (*Deployment, error) {
	d, err := newDeployment(mc, s.costs, s.cfg.Env)
	if err != nil {
		return nil, err
	}
	d.Source = source
	if d.Provider == "anthropic" {
		d.prov = s.anth
	} else {
		d.prov = s.openai
	}
	d.modelJSON, _ = json.Marshal(d.Model)
	d.auth = authHeader(d)
	if d.Provider == "anthropic" {
		d.direct = reachableDirectly(s.proxy, s.anth.endpoint(d))
	} else {
		d.direct = reachableDirectly(s.proxy, s.openai.endpoint(d, callChat))
	}
	for i, stream := range []bool{false, true} {
		d.logMeta[i] = callMeta(d, d.ModelName, stream, Usage{})
	}
	return d, nil
}

// callMeta is a spend log row's metadata for a call to model group group answered by d
// that used u: precomputed for the common row, which has no usage priced apart.
func callMeta(d *Deployment, group string, stream bool, u Usage) []byte {
	apart := u.CacheReadTokens > 0 || u.CacheWriteTokens > 0 || u.CacheWrite1hTokens > 0 || u.WebSearches > 0 ||
		u.FileSearches > 0 || u.CodeSessions > 0
	if group == d.ModelName && d.logMeta[0] != nil && !apart {
		if stream {
			return d.logMeta[1]
		}
		return d.logMeta[0]
	}
	b, _ := json.Marshal(callMetadata{ModelID: d.ID, ModelGroup: group, Deployment: d.Provider + "/" + d.Model, Stream: stream,
		CacheReadTokens: u.CacheReadTokens, CacheCreationTokens: u.CacheWriteTokens + u.CacheWrite1hTokens, WebSearches: u.WebSearches,
		FileSearches: u.FileSearches, CodeSessions: u.CodeSessions})
	return b
}

// Start loads API-added models and keeps re-reading them every ModelRefresh until Close.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.ModelStore == nil {
		return nil
	}
	if err := s.reload(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return nil
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.ModelRefresh)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
				if err := s.reload(bg); err != nil && bg.Err() == nil {
					s.log.Warn("reload llm models", "err", err)
				}
			}
		}
	}()
	return nil
}

// Close stops the model refresh and closes idle provider connections (of both clients).
func (s *Server) Close() error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
	if s.ownTr != nil {
		s.ownTr.CloseIdleConnections()
	}
	if f := s.openai.tr.fast; f != nil {
		f.CloseIdleConnections()
	}
	return nil
}

// reload rebuilds the router from the config models and the stored ones.
func (s *Server) reload(ctx context.Context) error {
	ds := append([]*Deployment(nil), s.static...)
	if s.cfg.ModelStore != nil {
		ms, err := s.cfg.ModelStore.Models(ctx)
		if err != nil {
			return fmt.Errorf("read models: %w", err)
		}
		for _, m := range ms {
			mc, err := s.configOf(m)
			if err != nil {
				s.log.Warn("skip stored model", "id", m.ID, "err", err)
				continue
			}
			d, err := s.deployment(mc, "db")
			if err != nil {
				s.log.Warn("skip stored model", "id", m.ID, "err", err)
				continue
			}
			ds = append(ds, d)
		}
	}
	s.router.set(ds)
	return nil
}

// Router returns the server's router.
func (s *Server) Router() *Router { return s.router }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Paths lists the routes the Server answers, for the gateway's mux.
var Paths = []string{
	"/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings", "/embeddings",
	"/v1/images/generations", "/images/generations", "/v1/images/edits", "/images/edits", "/v1/messages", "/v1/messages/count_tokens",
	"/v1/responses", "/responses", "/v1/models", "/models",
	"/model/new", "/model/info", "/v1/model/info", "/model/update", "/model/delete", "/spend/logs",
}

// AdminPaths are the routes of Paths that only admins may call (model management); the
// others are for any caller with a key.
var AdminPaths = []string{"/model/new", "/model/update", "/model/delete"}

// PathPrefixes lists the route subtrees the Server answers: stored responses
// (/v1/responses/{id}, its input_items).
var PathPrefixes = []string{"/v1/responses/", "/responses/"}

func (s *Server) routes() {
	h := func(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				s.writeError(w, r, err)
			}
		}
	}
	call := func(kind string) http.HandlerFunc {
		return h(func(w http.ResponseWriter, r *http.Request) error { return s.serveCall(w, r, kind) })
	}
	for _, p := range []string{"/v1/chat/completions", "/chat/completions"} {
		s.mux.Handle("POST "+p, call(callChat))
	}
	for _, p := range []string{"/v1/completions", "/completions"} {
		s.mux.Handle("POST "+p, call(callCompletions))
	}
	for _, p := range []string{"/v1/embeddings", "/embeddings"} {
		s.mux.Handle("POST "+p, call(callEmbeddings))
	}
	for _, p := range []string{"/v1/images/generations", "/images/generations"} {
		s.mux.Handle("POST "+p, call(callImages))
	}
	for _, p := range []string{"/v1/images/edits", "/images/edits"} {
		s.mux.Handle("POST "+p, call(callImageEdits))
	}
	s.mux.Handle("POST /v1/messages", call(callMessages))
	for _, p := range []string{"/v1/responses", "/responses"} {
		s.mux.Handle("POST "+p, call(callResponses))
	}
	for _, p := range PathPrefixes { // the rest of the subtree: an error in the API's shape, not net/http's text
		s.mux.Handle(p, h(func(w http.ResponseWriter, r *http.Request) error {
			return &requestError{status: http.StatusNotFound, msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)}
		}))
	}
	for _, p := range []string{"/v1/responses/{id}", "/responses/{id}"} {
		s.mux.Handle("GET "+p, h(func(w http.ResponseWriter, r *http.Request) error { return s.serveStoredResponse(w, r, "") }))
		s.mux.Handle("DELETE "+p, h(func(w http.ResponseWriter, r *http.Request) error { return s.serveStoredResponse(w, r, "") }))
		s.mux.Handle("GET "+p+"/input_items", h(func(w http.ResponseWriter, r *http.Request) error {
			return s.serveStoredResponse(w, r, "/input_items")
		}))
	}
	s.mux.Handle("POST /v1/messages/count_tokens", h(s.serveCountTokens))
	for _, p := range []string{"/v1/models", "/models"} {
		s.mux.Handle("GET "+p, h(s.serveModels))
	}
	s.mux.Handle("POST /model/new", h(s.serveModelNew))
	s.mux.Handle("GET /model/info", h(s.serveModelInfo))
	s.mux.Handle("GET /v1/model/info", h(s.serveModelInfo))
	s.mux.Handle("POST /model/update", h(s.serveModelUpdate))
	s.mux.Handle("POST /model/delete", h(s.serveModelDelete))
	s.mux.Handle("GET /spend/logs", h(s.serveSpendLogs))
}

// gatewayOnly are body fields for the gateway that are not sent to providers.
var gatewayOnly = []string{"metadata", "litellm_metadata", "tags", "api_base", "base_url", "api_key",
	"mock_response", "num_retries", "fallbacks", "user_config"}

// callInfo is what serveCall learns from a request body.
type callInfo struct {
	model     string
	stream    bool
	maxTokens int64
	n         int
	endUser   string
	tags      []string
	prompt    int64 // estimated prompt tokens
	// Web searches the provider may run (reserved) and their search_context_size; a chat
	// completion with web_search_options runs one, charged whatever the usage says.
	searches   int64
	searchSize string
	// The Responses API's hosted file search calls and code interpreter containers a call
	// may use, reserved like searches.
	fileSearches, codeSessions int64
	// serviceTier is the tier an OpenAI call asked for ("priority" or "flex"), priced at
	// its own rates; "" for the standard tier.
	serviceTier string
	// An image call's quality and size, which set what a token-priced image model reserves.
	quality, size string
	// anthropicUser is the caller's metadata.user_id, which a Messages API call sends on.
	anthropicUser json.RawMessage
}

func parseCall(body *reqBody, kind string, header http.Header) (*callInfo, error) {
	ci := &callInfo{}
	if ci.model, _ = body.text("model"); ci.model == "" {
		return nil, badRequest("model", "model is required")
	}
	if kind == callChat || kind == callMessages {
		ci.stream = body.flag("stream")
		msgs := body.get("messages")
		if len(msgs) == 0 {
			return nil, badRequest("messages", "messages is required")
		}
		ci.prompt = promptTokens(len(msgs)) + promptTokens(len(body.get("tools")))
		if kind == callMessages { // the Messages API's system prompt is a field of its own
			ci.prompt += promptTokens(len(body.get("system")))
		}
		for _, k := range []string{"max_completion_tokens", "max_tokens"} {
			if n, ok := body.integer(k); ok && n > 0 {
				ci.maxTokens = n
				break
			}
		}
	} else if kind == callEmbeddings {
		ci.prompt = promptTokens(len(body.get("input")))
	} else if kind == callCompletions {
		ci.stream = body.flag("stream")
		if len(body.get("prompt")) == 0 {
			return nil, badRequest("prompt", "prompt is required")
		}
		ci.prompt = promptTokens(len(body.get("prompt"))) + promptTokens(len(body.get("suffix")))
		if n, ok := body.integer("max_tokens"); ok && n > 0 {
			ci.maxTokens = n
		}
	} else if kind == callResponses {
		ci.stream = body.flag("stream")
		if body.flag("background") {
			return nil, badRequest("background", "background responses are not supported: the gateway could not charge what they cost")
		}
		ci.prompt = promptTokens(len(body.get("input"))) + promptTokens(len(body.get("instructions"))) + promptTokens(len(body.get("tools")))
		if n, ok := body.integer("max_output_tokens"); ok && n > 0 {
			ci.maxTokens = n
		}
	}
	ci.n = 1
	if kind == callImages || kind == callImageEdits {
		ci.quality, _ = body.text("quality")
		ci.size, _ = body.text("size")
		ci.prompt = promptTokens(len(body.get("prompt")))
	}
	if kind == callImages || kind == callImageEdits || kind == callChat || kind == callCompletions {
		counts := []string{"n"}
		if kind == callCompletions {
			counts = append(counts, "best_of") // generated and billed, though only n come back
		}
		for _, name := range counts {
			if v := body.get(name); len(v) > 0 && string(v) != "null" {
				n, ok := body.integer(name)
				if !ok || n < 1 || n > 128 {
					return nil, badRequest(name, name+" must be an integer from 1 to 128")
				}
				ci.n = max(ci.n, int(n))
			}
		}
	}
	var tags []string
	if v := body.get("tags"); len(v) > 0 {
		if err := json.Unmarshal(v, &tags); err != nil {
			return nil, badRequest("tags", "tags must be a list of strings")
		}
	}
	if err := ci.providerTools(body, kind); err != nil {
		return nil, err
	}
	if kind != callMessages { // Anthropic's service_tier chooses capacity, not a price
		ci.serviceTier, _ = body.text("service_tier")
	}
	md, lmd := gatewayMeta(body.get("metadata")), gatewayMeta(body.get("litellm_metadata"))
	ci.endUser, ci.anthropicUser = endUser(body, lmd), md.UserID
	var hdrTags []string
	for _, h := range header["X-Litellm-Tags"] { // canonical: Values would canonicalize on every call
		hdrTags = append(hdrTags, strings.Split(h, ",")...)
	}
	ci.tags = mergeTags(hdrTags, tags, md.Tags, lmd.Tags)
	if len(ci.tags) > 32 {
		return nil, badRequest("tags", "too many tags (at most 32)")
	}
	return ci, nil
}

// searchesReserved is how many web searches a search tool without max_uses is reserved
// for; a call that runs more is charged for all it ran. maxSearches caps what a call's
// max_uses can ask to reserve (a hostile value must not overflow the count).
const searchesReserved, maxSearches = 5, 1000

// providerTools notes the tool calls a call may have the provider run, which are charged
// apart from tokens: web searches, at the model's search_context_cost_per_query (chat
// completions' web_search_options, one search; Anthropic's web_search tools, max_uses
// each; the Responses API's web_search tools), and the Responses API's file searches and
// code interpreter containers.
func (ci *callInfo) providerTools(body *reqBody, kind string) error {
	type searchTool struct {
		Type              string `json:"type"`
		MaxUses           int64  `json:"max_uses"`
		SearchContextSize string `json:"search_context_size"`
	}
	switch kind {
	case callChat:
		if v := body.get("web_search_options"); len(v) > 0 && string(v) != "null" {
			var o searchTool
			if err := json.Unmarshal(v, &o); err != nil {
				return badRequest("web_search_options", "web_search_options must be an object")
			}
			ci.searches, ci.searchSize = 1, o.SearchContextSize
		}
	case callMessages, callResponses:
		v := body.get("tools")
		if !bytes.Contains(v, []byte("web_search")) && (kind != callResponses ||
			!bytes.Contains(v, []byte("file_search")) && !bytes.Contains(v, []byte("code_interpreter"))) {
			return nil // the common case, without decoding a long tool list
		}
		var tools []searchTool
		if err := json.Unmarshal(v, &tools); err != nil {
			return badRequest("tools", "tools must be a list of tools")
		}
		for _, t := range tools {
			switch {
			case kind == callResponses && t.Type == "file_search":
				ci.fileSearches = searchesReserved
				continue
			case kind == callResponses && t.Type == "code_interpreter":
				ci.codeSessions = 1
				continue
			case !strings.HasPrefix(t.Type, "web_search"):
				continue
			}
			n := t.MaxUses
			if n <= 0 {
				n = searchesReserved
			}
			ci.searches = min(ci.searches+min(n, maxSearches), maxSearches)
			if t.SearchContextSize != "" {
				ci.searchSize = t.SearchContextSize
			}
		}
	}
	return nil
}

// metaFields are the fields toolgate reads from a request's metadata or litellm_metadata
// (an object, or an object encoded as a JSON string, as multipart forms and some SDKs'
// extra_body send it).
type metaFields struct {
	Tags   []string        `json:"tags"`
	User   json.RawMessage `json:"user"`    // litellm_metadata.user: an end user
	UserID json.RawMessage `json:"user_id"` // metadata.user_id: Anthropic's own field
}

func gatewayMeta(v json.RawMessage) metaFields {
	if len(v) == 0 {
		return metaFields{} // apart from decodeMeta: no allocation for the common case
	}
	return decodeMeta(v)
}

func decodeMeta(v json.RawMessage) metaFields {
	var md metaFields
	if len(v) > 0 && v[0] == '"' {
		if s, ok := decodeText(v); ok {
			v = json.RawMessage(s)
		}
	}
	_ = json.Unmarshal(v, &md)
	return md
}

// endUser is the end user a call is attributed and budgeted to: the body's user, else
// litellm_metadata.user, else safety_identifier (OpenAI's successor to user), as LiteLLM
// reads them. Anthropic's metadata.user_id is not one: Claude Code fills it with a new
// value every session, which would make each session an end user with a budget row of its
// own (LiteLLM reads it, and its users see exactly that).
func endUser(body *reqBody, lmd metaFields) string {
	if u, _ := body.text("user"); u != "" {
		return u
	}
	if u := scalarText(lmd.User); u != "" {
		return u
	}
	u, _ := body.text("safety_identifier")
	return u
}

// scalarText is a JSON string's text or a number's digits; "" for anything else.
func scalarText(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String()
	}
	return ""
}

// anthropicMetadata is the metadata a Messages API call sends Anthropic: the caller's
// metadata.user_id (uid), which Anthropic uses to detect abuse, and nothing of toolgate's
// own (Anthropic refuses fields it does not know). It is nil when there is no user_id.
func anthropicMetadata(uid json.RawMessage) json.RawMessage {
	if len(uid) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(uid, &s) != nil {
		return nil
	}
	b, _ := json.Marshal(map[string]string{"user_id": s})
	return b
}

// refuseCredentials is the error for a body that would redirect the call or its
// credentials (request hygiene), or nil.
func refuseCredentials(body *reqBody) error {
	if p := checkBody(body); p != "" {
		return badRequest(p, "Rejected Request: "+p+" is not allowed in request body. Client-side credentials and endpoints need an admin to allow them for this key.")
	}
	return nil
}

// modelFor returns the model name that model stands for (model_group_alias) and its
// deployments, or the error for a caller whose key may use neither name, or a model that
// does not exist.
func (s *Server) modelFor(c *Caller, model string) (string, []*Deployment, error) {
	target := s.router.resolve(model)
	if !c.MayUse(model) && (target == model || !c.MayUse(target)) {
		return "", nil, &requestError{status: http.StatusUnauthorized, typ: "key_model_access_denied", param: "model",
			msg: fmt.Sprintf("key not allowed to access model. This key can only access models=%v. Tried to access %s", c.Models, model)}
	}
	ds := s.router.deployments(target)
	if len(ds) == 0 {
		return "", nil, fmt.Errorf("%w: %s", ErrUnknownModel, model)
	}
	return target, ds, nil
}

// estimate is the amount to reserve: the highest estimate among the model's deployments,
// so that a retry or a different pick cannot cost more than was reserved (fallbacks to
// other models are charged what they cost).
func (s *Server) estimate(model, kind string, ci *callInfo) float64 {
	best := 0.0
	for _, d := range s.router.deployments(model) {
		var e float64
		switch {
		case d.Price.IsImage() && d.Price.TokenPricedImages():
			e = d.Price.ImageReserve(ci.n, ci.prompt, ci.quality, ci.size)
		case d.Price.IsImage():
			e = d.Price.ImageCost(ci.n)
		case kind == callEmbeddings:
			e = d.Price.For(ci.prompt, ci.serviceTier).TokenCost(ci.prompt, 0)
		default:
			// n choices each produce up to the allowance.
			p := d.Price.For(ci.prompt, ci.serviceTier)
			e = p.ChatReserve(ci.prompt, ci.maxTokens) + float64(ci.n-1)*float64(p.OutputAllowance(ci.maxTokens))*p.OutputCostPerToken +
				float64(ci.searches)*d.Price.SearchCost(ci.searchSize) + d.Price.HostedToolCost(Usage{FileSearches: ci.fileSearches, CodeSessions: ci.codeSessions})
		}
		best = max(best, e)
	}
	return best
}

// cost is the actual cost of a call on d.
func cost(d *Deployment, kind string, ci *callInfo, u Usage, images int) float64 {
	if d.Price.IsImage() && d.Price.TokenPricedImages() {
		if u.PromptTokens == 0 && u.CompletionTokens == 0 { // no usage reported: what was reserved
			return d.Price.ImageReserve(max(images, ci.n), ci.prompt, ci.quality, ci.size)
		}
		return d.Price.ImageUsageCost(u)
	}
	if d.Price.IsImage() {
		if images == 0 {
			images = ci.n
		}
		return d.Price.ImageCost(images)
	}
	return d.Price.For(u.PromptTokens, ci.serviceTier).UsageCost(u) + float64(u.WebSearches)*d.Price.SearchCost(ci.searchSize) +
		d.Price.HostedToolCost(u)
}

// readBody reads a JSON body, or for image edits also a multipart/form-data one (the
// shape OpenAI's SDKs send files in).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, kind string) (*reqBody, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return nil, err
	}
	if mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		if kind != callImageEdits {
			return nil, badRequest("", "request body must be a JSON object, not multipart/form-data")
		}
		if params["boundary"] == "" {
			return nil, badRequest("", "multipart/form-data body without a boundary")
		}
		body, err := parseForm(b, params["boundary"])
		if err != nil {
			return nil, badRequest("", err.Error())
		}
		return body, nil
	}
	body, err := parseBody(b)
	if err != nil {
		return nil, badRequest("", err.Error())
	}
	return body, nil
}

// serveCall handles chat completions, embeddings and image generations.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request, kind string) error {
	ctx := r.Context()
	c := CallerFrom(ctx)
	if c == nil {
		return &requestError{status: http.StatusUnauthorized, msg: "authentication required"}
	}
	start := s.now()
	body, err := s.readBody(w, r, kind)
	if err != nil {
		return err
	}
	var override func(*Deployment) *Deployment
	if c.AllowClientSideCredentials {
		override = clientCredentials(body)
	} else if err := refuseCredentials(body); err != nil {
		return err
	}
	ci, err := parseCall(body, kind, r.Header)
	if err != nil {
		return err
	}
	var ds []*Deployment
	if ci.model, ds, err = s.modelFor(c, ci.model); err != nil {
		return err
	}
	var pin *Deployment
	if kind == callResponses {
		if pin, err = s.previousResponse(c, body, ds); err != nil {
			return err
		}
		if pin != nil {
			ds = []*Deployment{pin}
		}
	}
	// The request as a chat completion, for deployments that do not speak its API: the
	// Messages API for OpenAI-compatible ones, the Responses API for anthropic/* ones.
	var chatBody *reqBody
	toChat, translated := messagesToChat, func(d *Deployment) bool { return d.Provider != "anthropic" }
	if kind == callMessages {
		body.header = r.Header
	} else if kind == callResponses {
		toChat, translated = responsesToChat, func(d *Deployment) bool { return d.Provider == "anthropic" }
	}
	if kind == callMessages || kind == callResponses {
		if slices.ContainsFunc(ds, translated) { // now: a request that cannot be is refused before it is charged
			if chatBody, err = toChat(body); err != nil {
				return err
			}
		}
	}

	adm, err := s.limiter.Admit(ctx, c.Limits)
	if err != nil {
		return err
	}
	var tokens int64
	defer func() { adm.Done(tokens) }()

	refs := append([]store.BudgetRef(nil), c.Budgets...)
	for _, caps := range []struct {
		scope store.BudgetScope
		owner string
		names []string
	}{{store.BudgetKeyModel, c.KeyID, c.ModelBudgets}, {store.BudgetTeamModel, c.TeamID, c.TeamModelBudgets}} {
		for _, m := range caps.names {
			// A cap on an alias is a cap on its model; "*" and "prefix/*" caps share one
			// counter among the models they match, as a models list matches them.
			if s.router.resolve(m) == ci.model || (strings.Contains(m, "*") && allowed([]string{m}, ci.model)) {
				refs = append(refs, store.BudgetRef{Scope: caps.scope, ID: store.ModelCapID(caps.owner, m)})
			}
		}
	}
	if ci.endUser != "" {
		refs = append(refs, store.BudgetRef{Scope: store.BudgetEndUser, ID: ci.endUser})
	}
	tags := mergeTags(c.Tags, ci.tags)
	for _, t := range tags {
		refs = append(refs, store.BudgetRef{Scope: store.BudgetTag, ID: t})
	}
	var res *budget.Reservation
	if s.cfg.Budget != nil {
		res, err = s.cfg.Budget.Reserve(ctx, refs, s.estimate(ci.model, kind, ci))
		if err != nil {
			return err
		}
		// A safety net: Commit below settles first and makes this a no-op, but a panic
		// on the way must not leave the reservation (or the lease it is part of) held.
		defer func() { _ = res.Release(context.WithoutCancel(ctx)) }()
	}

	var reqID string
	if res != nil {
		reqID = res.ID // one time-ordered ID for the call's reservation and its spend row
	} else {
		reqID = budget.NewID()
	}
	out := body.forward(gatewayOnly)
	if kind == callMessages {
		if m := anthropicMetadata(ci.anthropicUser); m != nil { // sent only to Anthropic: translation leaves it out
			out.set("metadata", m)
		}
	}
	var pr *result
	at, err := s.router.route(ctx, ci.model, kind, ci.stream, pin, override, func(ctx context.Context, d *Deployment) error {
		m := d.modelField()
		if (kind == callMessages || kind == callResponses) && translated(d) {
			if chatBody == nil { // a fallback to a model the request's own model does not have
				var err error
				if chatBody, err = toChat(body); err != nil {
					return err
				}
			}
			chatBody.set("model", m)
			cr, err := d.prov.do(ctx, d, callChat, chatBody, ci.stream)
			if err != nil {
				return err
			}
			if kind == callResponses {
				pr, err = chatAsResponse(cr, ci.model)
			} else {
				pr, err = chatAsMessages(cr, ci.model)
			}
			return err
		}
		out.set("model", m)
		var err error
		pr, err = d.prov.do(ctx, d, kind, out, ci.stream)
		return err
	})
	logRow := &store.SpendLog{RequestID: reqID, CallType: callTypes[kind], KeyID: c.KeyID, KeyHash: c.KeyHash,
		KeyAlias: c.KeyAlias, UserID: c.UserID, TeamID: c.TeamID, OrgID: c.OrgID, EndUser: ci.endUser,
		Model: ci.model, StartTime: start, Tags: tags}
	if err != nil {
		if res != nil {
			if rerr := res.Release(ctx); rerr != nil {
				s.log.Error("release budget reservation", "err", rerr)
			}
		}
		logRow.Status, logRow.EndTime = "failure", s.now()
		s.writeLog(ctx, logRow)
		return err
	}
	d := at.d
	h := w.Header()
	h["X-Litellm-Call-Id"] = []string{reqID} // canonical keys, set directly: no per-call canonicalizing
	h["X-Litellm-Model-Id"] = []string{d.ID}
	adm.SetHeaders(h)

	if kind == callResponses && !translated(d) {
		owner := c.owner()
		rename := func(id string) string { return s.ids.issue(owner, d.ID, id) }
		if rs, ok := pr.stream.(*responsesStream); ok {
			rs.rename = rename
		} else if pr.stream == nil {
			pr.body = withID(pr.body, rename)
		}
	}

	var u Usage
	status := "success"
	images := 0
	if pr.stream != nil {
		status = s.pipe(w, r, pr.stream, pr.native)
		if f, ok := pr.stream.(interface{ failed() bool }); ok && status == "success" && f.failed() {
			status = "failure" // the provider's own end for a failed answer (response.failed)
		}
		var reported bool
		u, reported = pr.stream.usage()
		if !reported || u.PromptTokens == 0 {
			u.PromptTokens = max(u.PromptTokens, ci.prompt)
		}
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		_ = pr.stream.close()
	} else {
		u, images = pr.usage, pr.images
		if u.PromptTokens == 0 && u.CompletionTokens == 0 && !d.Price.IsImage() {
			u = Usage{PromptTokens: ci.prompt}
			if kind == callChat || kind == callResponses || kind == callCompletions {
				u.CompletionTokens = estimateTokens(len(pr.body) - 200)
			}
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(pr.body)
	}
	if kind == callChat && ci.searches > 0 { // web_search_options: the usage does not count it
		u.WebSearches = max(u.WebSearches, 1)
	}
	tokens = u.TotalTokens
	spend := cost(d, kind, ci, u, images)
	s.warnUnpriced(d, ci, u)
	at.record(u, spend, status == "success")
	at.finish(tokens, status == "success")
	if res != nil {
		if err := res.Commit(ctx, spend); err != nil {
			s.log.Error("commit budget reservation", "request_id", reqID, "err", err)
		}
	}
	logRow.PromptTokens, logRow.CompletionTokens, logRow.TotalTokens = u.PromptTokens, u.CompletionTokens, u.TotalTokens
	logRow.Spend, logRow.Status, logRow.EndTime = spend, status, s.now()
	logRow.Metadata = callMeta(d, ci.model, ci.stream, u)
	s.writeLog(ctx, logRow)
	return nil
}

// warnUnpriced says once per deployment that the provider-run tools of u cost nothing
// there, naming the model_info setting that would price them.
func (s *Server) warnUnpriced(d *Deployment, ci *callInfo, u Usage) {
	var unpriced []string
	if u.WebSearches > 0 && d.Price.SearchCost(ci.searchSize) == 0 {
		unpriced = append(unpriced, "search_context_cost_per_query")
	}
	if u.FileSearches > 0 && d.Price.FileSearchCostPer1kCalls == 0 {
		unpriced = append(unpriced, "file_search_cost_per_1k_calls")
	}
	if u.CodeSessions > 0 && d.Price.CodeInterpreterCostPerSession == 0 {
		unpriced = append(unpriced, "code_interpreter_cost_per_session")
	}
	if len(unpriced) > 0 && d.searchWarned.CompareAndSwap(false, true) {
		s.log.Warn("provider-run tools on this model are not charged: it has no price for them; set model_info."+strings.Join(unpriced, ", model_info."),
			"model", d.ModelName, "model_id", d.ID)
	}
}

// callMetadata is a spend log row's metadata for an LLM call: which deployment answered,
// and the parts of its usage priced apart, when there are any.
type callMetadata struct {
	Deployment string `json:"deployment"`
	ModelGroup string `json:"model_group"`
	ModelID    string `json:"model_id"`
	Stream     bool   `json:"stream"`

	CacheReadTokens     int64 `json:"cache_read_input_tokens,omitempty"`
	CacheCreationTokens int64 `json:"cache_creation_input_tokens,omitempty"`
	WebSearches         int64 `json:"web_search_requests,omitempty"`
	FileSearches        int64 `json:"file_search_calls,omitempty"`
	CodeSessions        int64 `json:"code_interpreter_sessions,omitempty"`
}

var callTypes = map[string]string{callChat: store.CallCompletion, callEmbeddings: store.CallEmbedding, callImages: store.CallImageGeneration,
	callImageEdits: store.CallImageEdit, callMessages: store.CallAnthropicMessages, callResponses: store.CallResponses,
	callCompletions: store.CallTextCompletion}

func (s *Server) writeLog(ctx context.Context, l *store.SpendLog) {
	if s.cfg.SpendLog == nil {
		return
	}
	// The row is written even when the client has gone; a full queue makes Write wait, for
	// at most its own bound (budget.SpendLogConfig.MaxWait).
	if err := s.cfg.SpendLog.Write(context.WithoutCancel(ctx), l); err != nil {
		s.log.Error("queue spend log", "request_id", l.RequestID, "err", err)
	}
}

// pipe streams a provider's stream to the client as Server-Sent Events, flushing each
// unless the next is already here. OpenAI chunks are written as data events and end with
// [DONE]; a native stream's events (the Messages API) are written as the provider sent
// them. A failure mid-stream ends the stream with an error in the route's shape. It returns
// "success" when the stream ended normally and "failure" when the provider or the client
// broke it off.
func (s *Server) pipe(w http.ResponseWriter, r *http.Request, st chunkStream, native bool) string {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 0, 512) // grows to the longest chunk
	for {
		chunk, err := st.next()
		if errors.Is(err, io.EOF) {
			// Not flushed here: the handler's return sends the end with the end of the
			// chunked body, in one write instead of two.
			if !native {
				_, _ = io.WriteString(w, "data: [DONE]\n\n")
			}
			return "success"
		}
		if err != nil {
			if r.Context().Err() == nil {
				_, body := errorResponse(err, http.Header{})
				var ev []byte
				if e, ok := st.(interface{ errorEvent(errorBody) []byte }); ok {
					ev = e.errorEvent(body)
				} else if native {
					b, _ := json.Marshal(anthropicError(body))
					ev = appendEvent(nil, "error", b)
				} else {
					b, _ := json.Marshal(body)
					ev = appendEvent(nil, "", b)
				}
				_, _ = w.Write(ev)
				_ = rc.Flush()
				s.log.Warn("llm stream broke off", "err", err)
			}
			return "failure"
		}
		out := chunk
		if !native {
			buf = appendEvent(buf[:0], "", chunk)
			out = buf
		}
		if _, err := w.Write(out); err != nil {
			return "failure"
		}
		if st.pending() {
			continue // the next chunk is already here: flush once after it
		}
		if err := rc.Flush(); err != nil {
			return "failure"
		}
	}
}

// clientCredentials returns an override applying the body's api_base/base_url/api_key to
// the picked deployment, or nil when the body sets none.
func clientCredentials(body *reqBody) func(*Deployment) *Deployment {
	base, _ := body.text("api_base")
	if base == "" {
		base, _ = body.text("base_url")
	}
	key, _ := body.text("api_key")
	if base == "" && key == "" {
		return nil
	}
	return func(d *Deployment) *Deployment {
		c := &Deployment{ID: d.ID, ModelName: d.ModelName, Provider: d.Provider, Model: d.Model, APIBase: d.APIBase,
			APIKey: d.APIKey, APIVersion: d.APIVersion, Organization: d.Organization, Price: d.Price, prov: d.prov}
		if base != "" {
			c.APIBase = base
		}
		if key != "" {
			c.APIKey = key
		}
		return c
	}
}
