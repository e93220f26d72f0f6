package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolgate/toolgate/gateway"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/postgres"
	"github.com/toolgate/toolgate/store/sqlite"
)

// opener is a store backend that is opened (and migrated) before use.
type opener interface {
	store.Store
	Open(ctx context.Context) error
}

// backends maps a database URL scheme to its store.
var backends = map[string]func(dsn string) (opener, error){
	"postgres":   func(dsn string) (opener, error) { return asOpener(postgres.New(dsn)) },
	"postgresql": func(dsn string) (opener, error) { return asOpener(postgres.New(dsn)) },
	"sqlite":     func(dsn string) (opener, error) { return asOpener(sqlite.New(sqlitePath(dsn))) },
}

// asOpener checks at run time that a backend implements the whole contract.
func asOpener(db any, err error) (opener, error) {
	if err != nil {
		return nil, err
	}
	o, ok := db.(opener)
	if !ok {
		return nil, fmt.Errorf("%T does not implement store.Store yet", db)
	}
	return o, nil
}

// parseDatabaseURL returns the backend scheme of a database URL and the DSN it gets.
func parseDatabaseURL(u string) (string, string, error) {
	scheme, _, ok := strings.Cut(u, ":")
	if !ok || backends[scheme] == nil {
		return "", "", fmt.Errorf("database url %q: use postgres://, postgresql:// or sqlite:PATH", redactDSN(u))
	}
	if scheme == "sqlite" && sqlitePath(u) == "" {
		return "", "", fmt.Errorf("database url %q: sqlite needs a path (sqlite:toolgate.db)", u)
	}
	return scheme, u, nil
}

// sqlitePath turns sqlite:PATH, sqlite://PATH and sqlite:///abs into a file path.
func sqlitePath(dsn string) string {
	return strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
}

// redactDSN hides a password in a database URL.
func redactDSN(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				return u[:i+3] + rest[:c] + ":***" + rest[at:]
			}
		}
	}
	return u
}

// openStore opens the database named by url and applies migrations.
func openStore(ctx context.Context, url string) (store.Store, error) {
	scheme, dsn, err := parseDatabaseURL(url)
	if err != nil {
		return nil, err
	}
	db, err := backends[scheme](dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if err := db.Open(ctx); err != nil {
		return nil, fmt.Errorf("open database %s: %w", redactDSN(url), err)
	}
	return db, nil
}

// Main is a running toolgate: the store, the gateway and the HTTP server. End-to-end tests
// build one with NewMain, call Run, talk to Addr, and Close it.
type Main struct {
	Config Config
	Logger *slog.Logger // set by NewMain from Config.LogLevel; replace before Run to redirect
	Stderr io.Writer    // where a generated master key is printed; default os.Stderr
	Getenv func(string) string

	// Addr is the address the server listens on, set by Run (useful with port 0).
	Addr string

	store store.Store
	gw    *gateway.Server
	tp    *sdktrace.TracerProvider // nil unless tracing is configured
	http  *http.Server
	done  chan error

	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main for cfg. It does no I/O.
func NewMain(cfg Config) *Main {
	return &Main{
		Config: cfg,
		Logger: newLogger(os.Stderr, cfg.LogLevel),
		Stderr: os.Stderr,
		Getenv: os.Getenv,
		done:   make(chan error, 1),
	}
}

// newLogger returns a JSON logger writing to w at level (debug, info, warn, error).
func newLogger(w io.Writer, level string) *slog.Logger {
	return slog.New(newLogHandler(w, level))
}

// newLogHandler returns the JSON handler of newLogger.
func newLogHandler(w io.Writer, level string) slog.Handler {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
}

// Run opens the store, starts the gateway and begins serving. It returns once the listener
// is open; Done reports when serving stops.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	for _, w := range cfg.Warnings {
		m.Logger.Warn(w)
	}
	db, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	m.store = db
	var tp trace.TracerProvider // stays a nil interface when tracing is off
	if cfg.Tracing {
		if m.tp, err = newTracerProvider(ctx); err != nil {
			return err
		}
		tp = m.tp
		m.Logger.Info("OpenTelemetry tracing on (OTLP/HTTP)")
	}
	gw, err := gateway.New(gateway.Config{
		TracerProvider:        tp,
		Store:                 db,
		Logger:                m.Logger,
		MasterKey:             cfg.MasterKey,
		MasterKeyOut:          m.Stderr,
		SaltKey:               cfg.SaltKey,
		MCPServers:            cfg.MCPServers,
		AllowPrivateUpstreams: cfg.AllowPrivateUpstreams,
		MaxBodyBytes:          cfg.MaxRequestBytes,
		SpendBatchWindow:      cmp.Or(cfg.SpendBatchWindow, -1), // 0 in the config turns batching off
		MetricsPublic:         !cfg.RequireAuthForMetrics,
		AllowedOrigins:        cfg.AllowedOrigins,
		OAuth:                 cfg.OAuth,
		TrustForwardedFor:     cfg.TrustForwardedFor,
		TrustedProxies:        cfg.TrustedProxies,
		ModelList:             cfg.ModelList,
		LiteLLMSettings:       cfg.LiteLLMSettings,
		RouterSettings:        cfg.RouterSettings,
		Version:               version,
	})
	if err != nil {
		return err
	}
	m.gw = gw
	if err := gw.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}
	m.Addr = ln.Addr().String()
	m.http = &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		err := m.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		m.done <- err
	}()
	m.Logger.Info("toolgate listening", "addr", m.Addr, "version", version,
		"database", redactDSN(cfg.DatabaseURL), "config_servers", len(cfg.MCPServers))
	return nil
}

// Done reports the serving error (nil after Close).
func (m *Main) Done() <-chan error { return m.done }

// Reload re-reads the config file and applies its mcp_servers without dropping
// connections. Other settings need a restart.
func (m *Main) Reload(ctx context.Context) error {
	if m.Config.ConfigFile == "" || m.gw == nil {
		return nil
	}
	data, err := os.ReadFile(m.Config.ConfigFile)
	if err != nil {
		return err
	}
	var fresh Config
	if err := parseConfigFile(&fresh, data, m.Getenv); err != nil {
		return err
	}
	if err := m.gw.SetConfigServers(ctx, fresh.MCPServers); err != nil {
		return err
	}
	m.Logger.Info("config reloaded", "config_servers", len(fresh.MCPServers))
	return nil
}

// Close shuts down gracefully: it stops accepting connections, lets in-flight tool calls
// and other requests finish within the shutdown grace, ends the open MCP streams, cuts
// whatever still runs when the grace is over, waits for those calls to record their spend,
// flushes the spend log, and closes upstream sessions and the database.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownGrace)
			shut := make(chan error, 1)
			go func() { shut <- m.http.Shutdown(ctx) }()
			if m.gw != nil && !m.gw.Drain(ctx) {
				m.Logger.Warn("shutdown grace over with tool calls or requests still running; cancelling them",
					"grace", m.Config.ShutdownGrace.String())
			}
			if err := <-shut; err != nil {
				m.Logger.Warn("grace period over; closing remaining connections", "err", err)
				if err := m.http.Close(); err != nil {
					errs = append(errs, err)
				}
			}
			cancel()
		}
		if m.gw != nil {
			errs = append(errs, m.gw.Close())
		}
		if m.tp != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := m.tp.Shutdown(ctx); err != nil {
				m.Logger.Warn("flush traces", "err", err)
			}
			cancel()
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
