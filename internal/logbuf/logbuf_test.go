package logbuf

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink records what reaches the underlying writer, one entry per Write call.
type sink struct {
	mu     sync.Mutex
	writes []string
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, string(p))
	return len(p), nil
}

func (s *sink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.writes, "")
}

func (s *sink) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

func TestLinesWaitForFlushAndArriveInOneWrite(t *testing.T) {
	var s sink
	b := New(&s, time.Hour, 0)
	defer b.Close()
	for i := range 3 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if got := s.text(); got != "" {
		t.Fatalf("written before any flush: %q", got)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.text(), "line 0\nline 1\nline 2\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s.calls() != 1 {
		t.Fatalf("%d writes to the underlying writer, want 1", s.calls())
	}
	if err := b.Flush(); err != nil || s.calls() != 1 {
		t.Fatalf("an empty flush wrote (%d writes, err %v)", s.calls(), err)
	}
}

func TestFullBufferIsWrittenAtOnce(t *testing.T) {
	var s sink
	b := New(&s, time.Hour, 16)
	defer b.Close()
	fmt.Fprint(b, "0123456789\n")
	if s.calls() != 0 {
		t.Fatal("written before the buffer was full")
	}
	fmt.Fprint(b, "abcdefghij\n")
	if got, want := s.text(), "0123456789\nabcdefghij\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestIntervalFlushes(t *testing.T) {
	var s sink
	b := New(&s, 10*time.Millisecond, 0)
	defer b.Close()
	fmt.Fprint(b, "hello\n")
	deadline := time.Now().Add(5 * time.Second)
	for s.text() != "hello\n" {
		if time.Now().After(deadline) {
			t.Fatalf("not written 5s after a 10ms interval: %q", s.text())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseFlushes(t *testing.T) {
	var s sink
	b := New(&s, time.Hour, 0)
	fmt.Fprint(b, "last words\n")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.text(); got != "last words\n" {
		t.Fatalf("after Close: %q", got)
	}
	if err := b.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
}

func TestWarningsFlushAtOnceInfoWaits(t *testing.T) {
	var s sink
	b := New(&s, time.Hour, 0)
	defer b.Close()
	log := slog.New(Handler(slog.NewTextHandler(b, nil), b, slog.LevelWarn)).With("svc", "gw")
	log.Info("request")
	if got := s.text(); got != "" {
		t.Fatalf("an info line was written at once: %q", got)
	}
	log.WithGroup("g").Warn("upstream down")
	got := s.text()
	if !strings.Contains(got, "msg=request svc=gw") || !strings.Contains(got, "msg=\"upstream down\" svc=gw") ||
		strings.Index(got, "request") > strings.Index(got, "upstream down") {
		t.Fatalf("after a warning, got %q; want the info line, then the warning", got)
	}
}

func TestDirectFollowsBufferedLines(t *testing.T) {
	var s sink
	b := New(&s, time.Hour, 0)
	defer b.Close()
	fmt.Fprint(b, "listening\n")
	fmt.Fprint(b.Direct(), "master key: sk-1\n")
	if got, want := s.text(), "listening\nmaster key: sk-1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestConcurrentWritersKeepLinesWhole: every line arrives once, whole, and each writer's
// lines in its order, while flushes run beside the writes.
func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	var s sink
	b := New(&s, time.Millisecond, 512)
	var wg sync.WaitGroup
	const writers, lines = 8, 2000
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(b, "w%d %05d %s\n", w, i, strings.Repeat("x", i%50+1))
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for _, l := range strings.Split(strings.TrimSuffix(s.text(), "\n"), "\n") {
		var w, i int
		var pad string
		if _, err := fmt.Sscanf(l, "w%d %05d %s", &w, &i, &pad); err != nil || len(pad) != i%50+1 {
			t.Fatalf("torn line %q", l)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d where %d was due", w, i, next[w])
		}
		next[w]++
	}
	for w, n := range next {
		if n != lines {
			t.Fatalf("writer %d: %d lines arrived, want %d", w, n, lines)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	line := bytes.Repeat([]byte("x"), 300)
	line[len(line)-1] = '\n'
	for _, buffered := range []bool{false, true} {
		b.Run(fmt.Sprint("buffered=", buffered), func(b *testing.B) {
			f, err := os.CreateTemp(b.TempDir(), "log")
			if err != nil {
				b.Fatal(err)
			}
			var w interface{ Write([]byte) (int, error) } = f
			if buffered {
				lb := New(f, 100*time.Millisecond, 0)
				defer lb.Close()
				w = lb
			}
			b.SetBytes(int64(len(line)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := w.Write(line); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
