package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// closeWait bounds how long Close waits for requests that the closing of sessions and
// upstreams cut short to finish recording their outcome.
const closeWait = 10 * time.Second

// lifecycle tracks the requests in the handler, so that a shutdown can let calls finish
// and end the long-lived MCP streams, which would otherwise keep http.Server.Shutdown
// waiting for the whole grace.
type lifecycle struct {
	mu       sync.Mutex
	requests int // requests in the handler, streams included
	busy     int // requests that are not streams
	streams  map[uint64]context.CancelFunc
	seq      uint64
	draining bool
}

// isStream reports whether r opens a long-lived MCP stream: the streamable HTTP GET stream
// or a legacy SSE connection.
func (s *Server) isStream(r *http.Request) bool {
	return r.Method == http.MethodGet && s.classify(r) == classMCP
}

// track registers r for the duration of its handler. It returns the request to serve (a
// stream gets a context that Drain cancels) and the function to call when it is done.
func (s *Server) track(r *http.Request) (*http.Request, func()) {
	l := &s.life
	stream := s.isStream(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	if !stream {
		l.busy++
		return r, func() {
			l.mu.Lock()
			l.requests--
			l.busy--
			l.mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	if l.draining {
		cancel() // a stream opened during the drain ends at once; the client reconnects elsewhere
	}
	if l.streams == nil {
		l.streams = map[uint64]context.CancelFunc{}
	}
	l.seq++
	id := l.seq
	l.streams[id] = cancel
	return r.WithContext(ctx), func() {
		cancel()
		l.mu.Lock()
		l.requests--
		delete(l.streams, id)
		l.mu.Unlock()
	}
}

// idle reports whether no request (streams too, when withStreams) and no tool call is
// in flight.
func (s *Server) idle(withStreams bool) bool {
	l := &s.life
	l.mu.Lock()
	n := l.busy
	if withStreams {
		n = l.requests
	}
	l.mu.Unlock()
	return n == 0 && s.metrics.calling.Load() == 0
}

// pollUntil polls cond until it holds or ctx ends, and reports whether it held.
func pollUntil(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
	return true
}

// waitIdle waits up to d for every request and tool call to end.
func (s *Server) waitIdle(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if !pollUntil(ctx, func() bool { return s.idle(true) }) {
		s.log.Warn("shutdown: requests still running after the sessions were closed; their spend rows may be missing")
	}
}

// Drain prepares a graceful shutdown. It waits until no tool call and no other request
// (an LLM stream included) is in flight, or until ctx ends, then ends the open MCP streams
// (streamable HTTP GET streams and legacy SSE connections) so that http.Server.Shutdown can
// finish. Requests that arrive meanwhile are still served; a stream that opens later ends
// at once. It reports whether every call finished before ctx ended. Call it while (or
// before) the http.Server shuts down, and Close after both.
func (s *Server) Drain(ctx context.Context) bool {
	s.life.mu.Lock()
	s.life.draining = true
	s.life.mu.Unlock()
	finished := pollUntil(ctx, func() bool { return s.idle(false) })
	s.life.mu.Lock()
	for _, cancel := range s.life.streams {
		cancel()
	}
	s.life.mu.Unlock()
	return finished
}
