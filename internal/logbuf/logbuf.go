// Package logbuf buffers a process's log output. Lines are written to the underlying
// writer in blocks, at the latest an interval after they were logged, instead of one
// write system call per line: at thousands of requests a second, with stderr a pipe, one
// access-log write per request cost the gateway about a tenth of its CPU per completion
// (docs/operations.md).
//
// Records that must not wait (warnings and errors, through Handler) and output that must
// appear in order with the log (through Direct) flush what is buffered first. What a
// process loses if it is killed without Close is at most one interval of lines below the
// flush level.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer buffers writes to an underlying writer. It is safe for concurrent use; each Write
// reaches the underlying writer whole and in order.
type Writer struct {
	w    io.Writer
	size int

	wmu sync.Mutex // held while writing to w: keeps blocks in order

	mu    sync.Mutex // guards buf and spare
	buf   []byte
	spare []byte

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Writer that writes to w every interval (if anything is waiting) and as
// soon as size bytes are waiting. An interval or size of zero or less means 100ms and
// 64 KiB. Close flushes it and stops its timer.
func New(w io.Writer, interval time.Duration, size int) *Writer {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	if size <= 0 {
		size = 64 << 10
	}
	b := &Writer{w: w, size: size, buf: make([]byte, 0, size), spare: make([]byte, 0, size),
		stop: make(chan struct{}), done: make(chan struct{})}
	go b.run(interval)
	return b
}

func (b *Writer) run(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Flush() // nowhere to report it: the log is what failed
		case <-b.stop:
			return
		}
	}
}

// Write buffers p. It writes to the underlying writer itself only when the buffer is
// full; the error it returns is that write's.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= b.size
	b.mu.Unlock()
	if full {
		if err := b.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is buffered. Writes that arrive while it writes are buffered, not
// held up.
func (b *Writer) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.flushLocked()
}

// flushLocked writes the buffer out; b.wmu is held.
func (b *Writer) flushLocked() error {
	b.mu.Lock()
	out := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	var err error
	if len(out) > 0 {
		_, err = b.w.Write(out)
	}
	b.mu.Lock()
	if cap(out) <= 4*b.size { // a burst of huge lines is not kept for ever
		b.spare = out[:0]
	} else {
		b.spare = make([]byte, 0, b.size)
	}
	b.mu.Unlock()
	return err
}

// Close flushes and stops the timer. Writes after Close are buffered until the next
// Flush, Direct write or full buffer.
func (b *Writer) Close() error {
	b.once.Do(func() {
		close(b.stop)
		<-b.done
	})
	return b.Flush()
}

// Direct returns a writer that flushes what b has buffered and then writes straight to
// the underlying writer: for output that must appear at once and after the log lines
// before it, such as a generated master key or a fatal error.
func (b *Writer) Direct() io.Writer { return direct{b} }

type direct struct{ b *Writer }

func (d direct) Write(p []byte) (int, error) {
	d.b.wmu.Lock()
	defer d.b.wmu.Unlock()
	if err := d.b.flushLocked(); err != nil {
		return 0, err
	}
	return d.b.w.Write(p)
}

// Handler returns h, changed so that records at level or above flush b once h has
// written them. h must write to b.
func Handler(h slog.Handler, b *Writer, level slog.Level) slog.Handler {
	return &handler{Handler: h, b: b, level: level}
}

type handler struct {
	slog.Handler
	b     *Writer
	level slog.Level
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		if ferr := h.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{Handler: h.Handler.WithAttrs(as), b: h.b, level: h.level}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{Handler: h.Handler.WithGroup(name), b: h.b, level: h.level}
}
