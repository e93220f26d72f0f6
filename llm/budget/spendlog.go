package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/toolgate/toolgate/store"
)

// SpendStore writes spend log rows: the write half of store.SpendStore. InsertSpendLogs
// must skip rows whose RequestID exists, so a retried batch never double-logs.
type SpendStore interface {
	InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error
}

// SpendLogConfig configures a SpendLog. Only Store is required.
type SpendLogConfig struct {
	Store SpendStore // required
	// Logger receives write errors. If nil, logs are discarded.
	Logger *slog.Logger
	// BatchSize is the most rows written in one transaction. If zero, 256.
	BatchSize int
	// Interval is the longest a row waits before it is written. If zero, 1 second.
	Interval time.Duration
	// QueueSize bounds rows waiting to be written; Write blocks while it is full. If zero,
	// 8192.
	QueueSize int
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("spend log closed")

// SpendLog writes spend rows in batches off the request path. Rows are never dropped: a
// full queue makes Write wait (back-pressure), a failed batch is retried until it is written
// or Close gives up. It is safe for concurrent use.
type SpendLog struct {
	cfg  SpendLogConfig
	log  *slog.Logger
	q    chan *store.SpendLog
	done chan struct{}

	mu     sync.RWMutex
	closed bool
	stop   chan struct{} // closed when Close's deadline passes
}

// NewSpendLog starts the writer goroutine. Close flushes and stops it.
func NewSpendLog(cfg SpendLogConfig) (*SpendLog, error) {
	if cfg.Store == nil {
		return nil, errors.New("budget: SpendLogConfig.Store is required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	s := &SpendLog{cfg: cfg, log: cfg.Logger, q: make(chan *store.SpendLog, cfg.QueueSize),
		done: make(chan struct{}), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	go s.run()
	return s, nil
}

// Write queues one row. It blocks while the queue is full and returns ctx.Err() if ctx ends
// first, or ErrClosed after Close.
func (s *SpendLog) Write(ctx context.Context, l *store.SpendLog) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.q <- l:
		return nil
	default:
	}
	select {
	case s.q <- l:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting rows and writes every queued row. If ctx ends before the rows are
// written (the store keeps failing), it returns an error counting the rows not written.
func (s *SpendLog) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	close(s.q)
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		close(s.stop)
		<-s.done
		return fmt.Errorf("spend log close: %w", ctx.Err())
	}
}

func (s *SpendLog) run() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	batch := make([]*store.SpendLog, 0, s.cfg.BatchSize)
	for {
		select {
		case l, ok := <-s.q:
			if !ok {
				s.flush(batch)
				return
			}
			batch = append(batch, l)
			if len(batch) >= s.cfg.BatchSize {
				s.flush(batch)
				batch = batch[:0]
			}
		case <-t.C:
			if len(batch) > 0 {
				s.flush(batch)
				batch = batch[:0]
			}
		}
	}
}

// flush writes batch, retrying with backoff until it succeeds or Close gives up.
func (s *SpendLog) flush(batch []*store.SpendLog) {
	if len(batch) == 0 {
		return
	}
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.cfg.Store.InsertSpendLogs(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		s.log.Error("write spend logs; retrying", "rows", len(batch), "err", err)
		select {
		case <-s.stop:
			s.log.Error("spend logs not written at shutdown", "rows", len(batch)+len(s.q))
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// ToolCost is the cost of one call to tool on an MCP server with cost info c:
// tool_name_to_cost_per_query[tool] when set, else default_cost_per_query.
func ToolCost(c store.MCPServerCost, tool string) float64 {
	if v, ok := c.ToolNameToCostPerQuery[tool]; ok {
		return v
	}
	return c.DefaultCostPerQuery
}
