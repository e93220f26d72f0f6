package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

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
	// derived from the master key; then changing the master key makes sealed credentials
	// unreadable.
	SaltKey string

	// MCPServers are upstream servers from the config file. They are merged with the
	// database's servers, are read-only through the API, and their Credentials field holds
	// plain (unsealed) JSON. If nil, there are none.
	MCPServers []*store.MCPServer

	// AllowPrivateUpstreams lets registered upstream URLs point at link-local and cloud
	// metadata addresses. If false, such URLs are refused.
	AllowPrivateUpstreams bool

	// MaxBodyBytes limits request bodies; larger ones get 413. If zero, DefaultMaxBodyBytes.
	MaxBodyBytes int64

	// KeyCacheTTL is how long a looked-up virtual key is trusted before it is read again.
	// If zero, 5 seconds. Updates made through this process invalidate at once.
	KeyCacheTTL time.Duration

	// MetricsPublic serves /metrics without authentication
	// (general_settings.require_auth_for_metrics_endpoint: false). If false, /metrics needs
	// an admin credential.
	MetricsPublic bool

	// HTTPClient is used for upstream MCP connections. If nil, a client with sane timeouts.
	HTTPClient *http.Client
	// CallTimeout bounds one upstream tool call. If zero, 60 seconds.
	CallTimeout time.Duration
	// ListTimeout bounds one upstream list call. If zero, 10 seconds.
	ListTimeout time.Duration
	// AllowedOrigins are the browser origins accepted on the MCP endpoints besides the
	// gateway's own. If nil, only same-origin and non-browser callers.
	AllowedOrigins []string

	// Version is reported by /health/readiness/details and to MCP clients. If empty, "dev".
	Version string

	// Now returns the current time. If nil, time.Now. Tests set it.
	Now func() time.Time
}

// Server is toolgate's HTTP surface. Create it with New, call Start, serve Handler, then Close.
type Server struct {
	cfg   Config
	store store.Store
	log   *slog.Logger
	now   func() time.Time

	handler http.Handler

	mu         sync.Mutex
	box        *seal.Box // set by Start
	masterHash []byte    // SHA-256 of the master key; set by Start
	closed     bool
}

// New validates cfg and allocates a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: Config.Store is required")
	}
	s := &Server{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now}
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
	mux := http.NewServeMux()
	s.routes(mux)
	s.identityRoutes(mux)
	s.oauthRoutes(mux)
	s.llmRoutes(mux)
	s.handler = s.middleware(mux)
	return s, nil
}

// Start loads or creates the master key and prepares the sealing key. It must be called
// once before Handler serves requests.
func (s *Server) Start(ctx context.Context) error {
	return nil
}

// Handler returns the HTTP handler for every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases upstream connections. It does not close the Store.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// routes registers the gateway's own routes.
func (s *Server) routes(mux *http.ServeMux) {}

// middleware wraps h with the request-scoped concerns every route shares.
func (s *Server) middleware(h http.Handler) http.Handler { return h }

type requestIDKey struct{}

// requestIDFrom returns the request id in ctx, or "".
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
