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
	// MaxWait is the longest Write waits for room in a full queue before it gives up with
	// ErrQueueFull. If zero, one minute.
	MaxWait time.Duration
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("spend log closed")

// ErrQueueFull is returned by Write when the queue stayed full for MaxWait.
var ErrQueueFull = errors.New("spend log queue full")

// SpendLog writes spend rows in batches off the request path. Rows are never dropped: a
// full queue makes Write wait (back-pressure), a failed batch is retried until it is written
// or Close gives up. It is safe for concurrent use.
//
// Write appends to a slice rather than sending on a channel, and the writer wakes once per
// batch (or interval), not once per row: at thousands of calls a second the per-row wake-ups
// cost more CPU than the rows' inserts.
type SpendLog struct {
	cfg  SpendLogConfig
	log  *slog.Logger
	room chan struct{} // one token per row queued or being written: at most QueueSize
	kick chan struct{} // a batch is full
	done chan struct{} // closed when the writer has stopped

	mu      sync.Mutex
	pending []*store.SpendLog
	closed  bool
	closing chan struct{} // closed by Close: write what is queued, then stop
	stop    chan struct{} // closed when Close's deadline passes
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
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Minute
	}
	s := &SpendLog{cfg: cfg, log: cfg.Logger, room: make(chan struct{}, cfg.QueueSize), kick: make(chan struct{}, 1),
		done: make(chan struct{}), closing: make(chan struct{}), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	go s.run()
	return s, nil
}

// Write queues one row. It blocks while the queue is full and returns ctx.Err() if ctx ends
// first, ErrQueueFull after waiting MaxWait, or ErrClosed after Close.
func (s *SpendLog) Write(ctx context.Context, l *store.SpendLog) error {
	select {
	case s.room <- struct{}{}:
	default:
		t := time.NewTimer(s.cfg.MaxWait)
		defer t.Stop()
		select {
		case s.room <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return ErrQueueFull
		case <-s.closing:
			return ErrClosed
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.room
		return ErrClosed
	}
	s.pending = append(s.pending, l)
	full := len(s.pending) >= s.cfg.BatchSize
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default: // the writer has been told already
		}
	}
	return nil
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
	close(s.closing)
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
	for {
		select {
		case <-s.kick:
		case <-t.C:
		case <-s.closing:
			s.writePending()
			return
		}
		s.writePending()
	}
}

// writePending writes every queued row, in batches of at most BatchSize. A batch leaves
// the queue (and frees its room) when the writer takes it.
func (s *SpendLog) writePending() {
	for {
		s.mu.Lock()
		n := min(len(s.pending), s.cfg.BatchSize)
		batch := s.pending[:n:n]
		if n == len(s.pending) {
			s.pending = nil
		} else {
			s.pending = s.pending[n:]
		}
		s.mu.Unlock()
		if n == 0 {
			return
		}
		for range n {
			<-s.room
		}
		if !s.flush(batch) {
			return
		}
	}
}

// flush writes batch, retrying with backoff until it succeeds (true) or Close gives up
// (false).
func (s *SpendLog) flush(batch []*store.SpendLog) bool {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.cfg.Store.InsertSpendLogs(ctx, batch)
		cancel()
		if err == nil {
			return true
		}
		s.log.Error("write spend logs; retrying", "rows", len(batch), "err", err)
		select {
		case <-s.stop:
			s.mu.Lock()
			behind := len(s.pending)
			s.mu.Unlock()
			s.log.Error("spend logs not written at shutdown", "rows", len(batch)+behind)
			return false
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
