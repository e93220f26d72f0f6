package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/gateway/upstream"
	"github.com/toolgate/toolgate/internal/seal"
	"github.com/toolgate/toolgate/store"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 4 << 20

// Config configures a Server. The zero value of every field but Store is usable.
type Config struct {
	// Store persists servers, keys, settings and the audit log. Required. The Server does
	// not open or close it.
	Store store.Store

	// Logger receives access logs and errors. If nil, logs are discarded.
	Logger *slog.Logger

	// MasterKey is the admin credential. If empty, the hash stored in the settings is used;
	// if there is none, Start generates a key, prints it once to MasterKeyOut and stores
	// only its SHA-256.
	MasterKey string
	// MasterKeyOut receives a generated master key. If nil, os.Stderr.
	MasterKeyOut io.Writer

	// SaltKey seals upstream credentials at rest (TOOLGATE_SALT_KEY). If empty, the key is
	// derived from MasterKey; if that is empty too, credentials cannot be stored and
	// requests carrying them get 400.
	SaltKey string

	// MCPServers are upstream servers from the config file. They are merged with the
	// database's servers (a config server wins a name clash), are read-only through the
	// API, and their Credentials field holds plain (unsealed) JSON. If nil, there are none.
	MCPServers []*store.MCPServer

	// AllowPrivateUpstreams lets registered upstream URLs point at link-local and cloud
	// metadata addresses. If false, such URLs are refused.
	AllowPrivateUpstreams bool

	// MaxBodyBytes limits request bodies; larger ones get 413. If zero, DefaultMaxBodyBytes.
	MaxBodyBytes int64

	// KeyCacheTTL is how long a looked-up virtual key is trusted before it is read again.
	// If zero, 5 seconds. Changes made through this process invalidate at once.
	KeyCacheTTL time.Duration

	// MetricsPublic serves /metrics without authentication
	// (general_settings.require_auth_for_metrics_endpoint: false). If false, /metrics needs
	// an admin credential.
	MetricsPublic bool

	// HTTPClient is used for upstream MCP connections. If nil, a client whose dialer refuses
	// link-local and cloud metadata addresses (unless AllowPrivateUpstreams) at connect time.
	HTTPClient *http.Client
	// TracerProvider, if set, traces every request (continuing a caller's traceparent) and
	// every upstream HTTP request as its child, sending traceparent upstream. If nil, no
	// tracing.
	TracerProvider trace.TracerProvider
	// CallTimeout bounds one upstream tool call. If zero, the pool's default (60s).
	CallTimeout time.Duration
	// ListTimeout bounds one upstream list call. If zero, the pool's default (5s).
	ListTimeout time.Duration
	// CacheTTL is how long federated lists are served before a background refresh. If
	// zero, federation's default.
	CacheTTL time.Duration
	// SessionIdleTTL expires idle MCP sessions (2025-era clients). If zero, federation's default.
	SessionIdleTTL time.Duration
	// SessionKey signs MCP session IDs so that any replica sharing it accepts them. If nil,
	// it is derived from SaltKey or MasterKey; if both are empty, a random key is used and
	// sessions do not survive a restart or move between replicas.
	SessionKey []byte
	// AllowedOrigins are the browser origins accepted on the MCP endpoints besides the
	// gateway's own. If nil, only same-origin and non-browser callers.
	AllowedOrigins []string

	// OAuth configures protected-resource discovery, the built-in authorization server and
	// JWT admission (see OAuthConfig). The zero value turns all three off.
	OAuth OAuthConfig

	// TrustForwardedFor believes X-Forwarded-For when the TCP peer is in TrustedProxies
	// (general_settings.use_x_forwarded_for); with no trusted ranges every caller then counts
	// as external. If false, the TCP peer is the caller. It decides which callers see servers
	// with available_on_public_internet: false.
	TrustForwardedFor bool
	TrustedProxies    []netip.Prefix

	// ModelList, LiteLLMSettings and RouterSettings are the config file's model_list,
	// litellm_settings and router_settings sections, os.environ/ references resolved, for the
	// LLM routes. If nil, there are none.
	ModelList       []map[string]any
	LiteLLMSettings map[string]any
	RouterSettings  map[string]any

	// SpendBatchWindow is how long the budget core admits calls against one budget lease
	// before settling it in the store (general_settings.proxy_batch_write_at): spend reaches
	// the database up to this late, and the database sees two writes per lease instead of
	// two per call. If zero, 1 second; if negative, every call is reserved and settled in
	// the database.
	SpendBatchWindow time.Duration

	// RegistryRefresh is how often the server registry is re-read from the database, so
	// that servers registered through other replicas are served. If zero, 30 seconds; if
	// negative, never (changes through this process still apply at once).
	RegistryRefresh time.Duration

	// Version is reported by /health/readiness/details and to MCP clients. If empty, "dev".
	Version string

	// Now returns the current time. If nil, time.Now. Tests set it.
	Now func() time.Time
}

// Server is toolgate's HTTP surface. Create it with New, call Start, serve Handler, then Close.
//
// The identity, oauth and llm route functions (identityRoutes, oauthRoutes, llmRoutes) run
// inside New, after the gateway's own routes and before the upstream pool and federation
// are built. There they may:
//   - register routes on the mux (patterns must not conflict with the gateway's);
//   - classify routes that are not admin-only with s.addRouteRule (the default is admin);
//   - add bearer-token authenticators with s.addTokenAuthenticator (OAuth, JWT);
//   - set s.challenge (the WWW-Authenticate value for 401s on MCP routes);
//   - set s.authorizer (tool permissions) and s.toolHook (budgets around tool calls);
//   - append to s.onReload to learn the merged server registry after every change.
//
// Handlers may use s.store, s.log, s.now, s.metrics.registry, s.writeError/s.handle,
// decodeJSON, s.sealBox (secrets at rest), s.invalidateKey/s.invalidateAllKeys and
// PrincipalFrom.
type Server struct {
	cfg     Config
	store   store.Store
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	keys    *expirable.LRU[string, *Principal] // admission cache by key hash

	handler http.Handler
	pool    *upstream.Pool
	ownHC   *http.Client // the upstream client New made, closed by Close; nil for Config.HTTPClient
	fed     *federation.Federation

	// Set by the route functions of other work (identity, oauth, llm) during New.
	rules      []routeRule                        // route classification; see addRouteRule
	tokenAuth  []TokenAuthenticator               // see addTokenAuthenticator
	challenge  func(r *http.Request) string       // WWW-Authenticate value for 401s on MCP routes
	authorizer federation.Authorizer              // tool-level permissions; nil allows all
	toolHook   federation.CallHook                // budgets around tool calls; nil none
	onReload   []func(servers []*store.MCPServer) // told the merged registry after each change
	oauth      *oauthState                        // set by oauthRoutes; nil without discovery

	reloadMu sync.Mutex // serializes registry rebuilds and guards regPrint
	reg      atomic.Pointer[registry]
	regPrint [32]byte // fingerprint of the registry last given to the pool and federation

	stop context.CancelFunc // ends background work started by Start
	bg   sync.WaitGroup

	life lifecycle // in-flight requests and streams, for Drain and Close

	mu         sync.Mutex
	box        *seal.Box          // nil when no salt or master key is configured
	configSrvs []*store.MCPServer // the config file's servers; replaced by SetConfigServers
	masterHash []byte             // SHA-256 of the master key; set by Start
	started    bool
	closed     bool
}

// New validates cfg and allocates a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: Config.Store is required")
	}
	m := newMetrics()
	s := &Server{cfg: cfg, store: meteredStore{Store: cfg.Store, m: m}, log: cfg.Logger, now: cfg.Now, metrics: m}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.MaxBodyBytes <= 0 {
		s.cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.cfg.KeyCacheTTL <= 0 {
		s.cfg.KeyCacheTTL = 5 * time.Second
	}
	if s.cfg.Version == "" {
		s.cfg.Version = "dev"
	}
	if s.cfg.RegistryRefresh == 0 {
		s.cfg.RegistryRefresh = 30 * time.Second
	}
	if s.cfg.MasterKeyOut == nil {
		s.cfg.MasterKeyOut = os.Stderr
	}
	if cfg.MasterKey != "" {
		sum := sha256.Sum256([]byte(cfg.MasterKey))
		s.masterHash = sum[:]
	}
	if secret := cfg.SaltKey; secret != "" || cfg.MasterKey != "" {
		if secret == "" {
			secret = cfg.MasterKey
		}
		box, err := seal.New(secret)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		s.box = box
	}
	var errs []error
	for _, srv := range cfg.MCPServers {
		if err := validateConfigServer(srv, cfg.AllowPrivateUpstreams); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gateway: config mcp_servers: %w", err)
	}
	s.configSrvs = cfg.MCPServers
	s.keys = expirable.NewLRU[string, *Principal](10000, nil, s.cfg.KeyCacheTTL)
	s.rules = append(s.rules, builtinRules...)
	s.reg.Store(&registry{})

	mux := http.NewServeMux()
	s.routes(mux)
	s.identityRoutes(mux)
	s.setClientNetwork(cfg.TrustForwardedFor, cfg.TrustedProxies)
	if err := s.oauthRoutes(mux); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s.llmRoutes(mux)

	upstreamHC, ownHC := s.upstreamClient()
	s.ownHC = ownHC
	s.pool = upstream.New(upstream.Config{
		Logger:        s.log.With("component", "upstream"),
		HTTPClient:    upstreamHC,
		CallTimeout:   cfg.CallTimeout,
		ListTimeout:   cfg.ListTimeout,
		OnListChanged: s.listChanged,
		OnHealth:      s.upstreamHealth,
	})
	fed, err := federation.New(federation.Config{
		TracerProvider: cfg.TracerProvider,
		Upstreams:      oauthUpstreams{s, s.pool},
		Logger:         s.log.With("component", "federation"),
		Authorizer:     authorizer{s},
		CallHook:       &callHook{m: s.metrics, next: func() federation.CallHook { return s.toolHook }},
		Principal:      func(ctx context.Context) string { return PrincipalFrom(ctx).subject() },
		ListTimeout:    cfg.ListTimeout,
		CacheTTL:       cfg.CacheTTL,
		SessionIdleTTL: cfg.SessionIdleTTL,
		AllowedOrigins: cfg.AllowedOrigins,
		MaxBodyBytes:   s.cfg.MaxBodyBytes,
		Name:           "toolgate",
		Version:        s.cfg.Version,
		SessionKey:     sessionKey(cfg),
		OnSession:      func(d int) { s.metrics.sessions.Add(float64(d)) },
		OnListCache:    func(hit bool) { s.metrics.cache.WithLabelValues("mcp_list", hitMiss(hit)).Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s.fed = fed
	s.handler = s.traced(s.middleware(mux))
	return s, nil
}

// sessionKey returns the session signing key for cfg, or nil for a random one.
func sessionKey(cfg Config) []byte {
	if cfg.SessionKey != nil {
		return cfg.SessionKey
	}
	return derivedKey(cfg, "toolgate session key v1")
}

// derivedKey returns the key for purpose derived from the salt key, else the master key;
// nil when neither is configured.
func derivedKey(cfg Config, purpose string) []byte {
	secret := cfg.SaltKey
	if secret == "" {
		secret = cfg.MasterKey
	}
	if secret == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(purpose + "\x00" + secret))
	return sum[:]
}

// Start loads or creates the master key, loads the registered servers and connects to
// them. It must be called once before Handler serves requests.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("gateway: Start called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()
	if err := s.loadMasterKey(ctx); err != nil {
		return err
	}
	if s.box == nil {
		s.log.Warn("no TOOLGATE_SALT_KEY and no configured master key: upstream credentials cannot be stored (set either to enable them)")
	}
	if err := s.reload(ctx); err != nil {
		return fmt.Errorf("gateway: load mcp servers: %w", err)
	}
	if s.cfg.RegistryRefresh > 0 {
		bgCtx, cancel := context.WithCancel(context.Background())
		s.mu.Lock()
		s.stop = cancel
		s.mu.Unlock()
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.refreshRegistry(bgCtx, s.cfg.RegistryRefresh)
		}()
	}
	for _, srv := range s.reg.Load().servers {
		if srv.AllowKeyless {
			s.log.Warn("KEYLESS ACCESS ENABLED: anyone who can reach this gateway may use this server's tools without a key",
				"server", srv.Name, "routes", []string{"/mcp/" + srv.Name, "/" + srv.Name + "/mcp"})
		}
	}
	return nil
}

// loadMasterKey sets masterHash from the config, the settings, or a new generated key.
func (s *Server) loadMasterKey(ctx context.Context) error {
	if s.cfg.MasterKey != "" {
		return nil
	}
	h, err := s.store.Setting(ctx, settingMasterKeyHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("gateway: read master key hash: %w", err)
	}
	if err != nil {
		key := newMasterKey()
		stored, err := s.store.SetSettingIfAbsent(ctx, settingMasterKeyHash, hashKey(key))
		if err != nil {
			return fmt.Errorf("gateway: store master key hash: %w", err)
		}
		if stored {
			fmt.Fprintf(s.cfg.MasterKeyOut, "\ntoolgate: generated a master key (shown once; only its hash is stored):\n\n    %s\n\n"+
				"Set TOOLGATE_MASTER_KEY to it to keep using it and to seal upstream credentials.\n\n", key)
		}
		if h, err = s.store.Setting(ctx, settingMasterKeyHash); err != nil {
			return fmt.Errorf("gateway: read master key hash: %w", err)
		}
	}
	sum, err := decodeHash(h)
	if err != nil {
		return fmt.Errorf("gateway: setting %s: %w", settingMasterKeyHash, err)
	}
	s.mu.Lock()
	s.masterHash = sum
	s.mu.Unlock()
	return nil
}

// SetConfigServers replaces the config file's servers (on a reload) and applies the change
// at once: new servers connect, removed ones close, unchanged ones keep their sessions.
func (s *Server) SetConfigServers(ctx context.Context, servers []*store.MCPServer) error {
	var errs []error
	for _, srv := range servers {
		if err := validateConfigServer(srv, s.cfg.AllowPrivateUpstreams); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gateway: config mcp_servers: %w", err)
	}
	s.mu.Lock()
	s.configSrvs = servers
	s.mu.Unlock()
	return s.reload(ctx)
}

// Handler returns the HTTP handler for every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Close closes MCP sessions and upstream connections, waits (up to 10 seconds) for the
// requests they cut short to finish, then flushes the LLM spend log. It does not close the
// Store. Call Drain first for a graceful shutdown.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.bg.Wait()
	// Sessions and upstreams first, which ends the calls still running; then wait for
	// their handlers to record them, so the spend log flush below has every row.
	errs := []error{s.fed.Close(), s.pool.Close()}
	if s.ownHC != nil {
		s.ownHC.CloseIdleConnections()
	}
	s.waitIdle(closeWait)
	return errors.Join(append(errs, s.llmClose())...)
}

// isClosed reports whether Close was called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sealBox returns the box that seals secrets at rest, or an error a handler can return
// when none is configured.
func (s *Server) sealBox(param string) (*seal.Box, error) {
	if s.box == nil {
		return nil, badRequest(param, "%s cannot be stored: set TOOLGATE_SALT_KEY (or TOOLGATE_MASTER_KEY) so the gateway can encrypt it", param)
	}
	return s.box, nil
}

// routes registers the gateway's own routes.
func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /health/liveliness", s.liveliness)
	mux.HandleFunc("GET /health/liveness", s.liveliness)
	mux.HandleFunc("GET /health/readiness", s.readiness)
	mux.HandleFunc("GET /health/readiness/details", s.handle(s.readinessDetails))
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("GET /openapi.json", s.openAPIDoc)

	mux.HandleFunc("POST /v1/mcp/server", s.handle(s.createServer))
	mux.HandleFunc("GET /v1/mcp/server", s.handle(s.listServers))
	mux.HandleFunc("PUT /v1/mcp/server", s.handle(s.updateServer))
	mux.HandleFunc("GET /v1/mcp/server/health", s.handle(s.serverHealth))
	mux.HandleFunc("GET /v1/mcp/server/{id}", s.handle(s.getServer))
	mux.HandleFunc("DELETE /v1/mcp/server/{id}", s.handle(s.deleteServer))
	mux.HandleFunc("GET /v1/mcp/tools", s.handle(s.listTools))
	mux.HandleFunc("GET /mcp-rest/tools/list", s.handle(s.restListTools))
	mux.HandleFunc("POST /mcp-rest/tools/call", s.handle(s.restCallTool))

	mux.HandleFunc("/", s.fallback)
}

// fallback serves the MCP endpoints (federation parses their paths itself) and a JSON 404
// for everything else. MCP requests first pass identityRequest, which applies the caller's
// network scope and x-mcp-toolset-id narrowing (403 for a toolset not granted).
func (s *Server) fallback(w http.ResponseWriter, r *http.Request) {
	if s.classify(r) == classMCP {
		r2, err := s.identityRequest(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.fed.Handler().ServeHTTP(w, r2)
		return
	}
	s.writeError(w, r, &Error{Status: http.StatusNotFound, Message: "no route for " + r.Method + " " + r.URL.Path})
}

// authorizer applies the identity work's permissions (s.authorizer) and the rules the
// gateway owns: an anonymous caller sees only keyless servers; without s.authorizer the
// master key sees everything. With it, the master key is an admin there like a proxy_admin
// user's key (past the grant levels, still narrowed by x-mcp-toolset-id and network
// scope), so that what it sees is what the explain route reports.
type authorizer struct{ s *Server }

func (a authorizer) AllowServer(ctx context.Context, server string) bool {
	p := PrincipalFrom(ctx)
	switch {
	case p == nil:
		return false
	case p.Kind == KindAnonymous:
		return a.s.isKeyless(server)
	case p.Kind == KindMaster && a.s.authorizer == nil:
		return true
	case a.s.authorizer != nil:
		return a.s.authorizer.AllowServer(ctx, server)
	}
	return true
}

func (a authorizer) AllowTool(ctx context.Context, server, tool string) bool {
	p := PrincipalFrom(ctx)
	switch {
	case p == nil:
		return false
	case p.Kind == KindAnonymous:
		return a.s.isKeyless(server)
	case p.Kind == KindMaster && a.s.authorizer == nil:
		return true
	case a.s.authorizer != nil:
		return a.s.authorizer.AllowTool(ctx, server, tool)
	}
	return true
}
