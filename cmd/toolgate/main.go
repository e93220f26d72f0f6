// Toolgate is an MCP gateway: it federates upstream MCP servers behind one endpoint,
// authenticates and authorizes every caller, and routes LLM completions under one budget.
//
// Usage:
//
//	toolgate serve [--host H] [--port P] [--config FILE]
//	toolgate migrate [--config FILE]
//	toolgate version
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/toolgate/toolgate/internal/logbuf"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  toolgate serve [--host H] [--port P] [--config FILE]   run the gateway
  toolgate migrate [--config FILE]                       apply database migrations and exit
  toolgate version                                       print the version
`

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "toolgate %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve", "migrate":
	default:
		fmt.Fprintf(stderr, "toolgate: unknown command %q\n%s", args[0], usage)
		return 2
	}
	cfg, err := loadConfig(args[0], args[1:], getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "toolgate: invalid configuration:\n%v\n", err)
		return 2
	}
	ctx := context.Background()
	if args[0] == "migrate" {
		if err := migrate(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "toolgate: migrate: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "toolgate: migrations applied")
		return 0
	}

	m := NewMain(cfg)
	if cfg.LogFlushInterval > 0 {
		// Log lines go out in blocks, not one write each; warnings and errors, the master
		// key and this function's own messages flush what waits first.
		logs := logbuf.New(stderr, cfg.LogFlushInterval, 0)
		defer logs.Close()
		stderr = logs.Direct()
		m.Logger = slog.New(logbuf.Handler(newLogHandler(logs, cfg.LogLevel), logs, slog.LevelWarn))
	} else {
		m.Logger = newLogger(stderr, cfg.LogLevel)
	}
	m.Stderr = stderr
	m.Getenv = getenv
	// Catch signals before serving: a SIGHUP that arrives once the port answers must reload,
	// not kill the process (the default action).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := m.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		m.Close()
		return 1
	}
	for {
		select {
		case err := <-m.Done():
			m.Close()
			if err != nil {
				fmt.Fprintf(stderr, "toolgate: %v\n", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := m.Reload(ctx); err != nil {
					m.Logger.Error("reload failed; keeping the running configuration", "err", err)
				}
				continue
			}
			m.Logger.Info("shutting down", "signal", sig.String(), "grace", m.Config.ShutdownGrace.String())
			if err := m.Close(); err != nil {
				fmt.Fprintf(stderr, "toolgate: shutdown: %v\n", err)
				return 1
			}
			return 0
		}
	}
}

// migrate opens the database, which applies pending migrations, and closes it.
func migrate(ctx context.Context, cfg Config) error {
	db, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	return db.Close()
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
