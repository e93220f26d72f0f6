package federation

import (
	"context"
	"sync"
	"time"
)

// listCache holds one upstream list L (tools, resources, templates or prompts)
// of one server. A list that was fetched once is always served at once; it is
// refreshed in the background when older than the TTL or marked stale. A list
// that was never fetched is fetched on demand, and callers wait for it only
// up to their own deadline. Fetches are deduplicated. After a failed fetch of
// a list that never succeeded, callers do not wait again until retryAfter has
// passed (the refresh still runs in the background), so a dead upstream costs
// one deadline, not one per request.
type listCache[L any] struct {
	mu        sync.Mutex
	items     L
	gen       uint64 // incremented by every successful fetch
	fetchedAt time.Time
	failedAt  time.Time
	err       error
	stale     bool
	inflight  chan struct{}
}

// fetcher fetches a list. It runs in the fetch's own goroutine, before
// waiting callers are woken, so work it does on the list overlaps the wait for
// other upstreams.
type fetcher[L any] func(ctx context.Context) (L, error)

// cacheEnv is what a listCache needs from its Federation.
type cacheEnv struct {
	base       context.Context // cancelled by Close
	timeout    time.Duration   // per fetch
	ttl        time.Duration
	retryAfter time.Duration
	wg         *sync.WaitGroup
	onDone     func(changed bool, err error) // called after every fetch, may be nil
	onLookup   func(hit bool)                // called by every get, may be nil
}

// snapshot returns the cached items without fetching, and whether there are any.
func (c *listCache[L]) snapshot() (L, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items, c.gen, !c.fetchedAt.IsZero()
}

// lastErr returns the error of the last fetch, nil if it succeeded.
func (c *listCache[L]) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// get returns the list, fetching it if it was never fetched and waiting for
// that at most until wait is done. ok is false if no list is available.
func (c *listCache[L]) get(wait context.Context, env cacheEnv, fetch fetcher[L]) (items L, gen uint64, ok bool) {
	c.mu.Lock()
	now := time.Now()
	if env.onLookup != nil {
		env.onLookup(!c.fetchedAt.IsZero())
	}
	if !c.fetchedAt.IsZero() {
		if c.stale || now.Sub(c.fetchedAt) > env.ttl {
			c.startLocked(env, fetch)
		}
		items, gen = c.items, c.gen
		c.mu.Unlock()
		return items, gen, true
	}
	if c.inflight == nil && !c.failedAt.IsZero() && now.Sub(c.failedAt) < env.retryAfter {
		c.mu.Unlock()
		return items, 0, false
	}
	done := c.startLocked(env, fetch)
	c.mu.Unlock()
	select {
	case <-done:
	case <-wait.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items, c.gen, !c.fetchedAt.IsZero()
}

// refresh starts a fetch (unless one is running) and returns a channel closed
// when it ends.
func (c *listCache[L]) refresh(env cacheEnv, fetch fetcher[L]) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stale = true
	return c.startLocked(env, fetch)
}

func (c *listCache[L]) startLocked(env cacheEnv, fetch fetcher[L]) chan struct{} {
	if c.inflight != nil {
		return c.inflight
	}
	if env.base.Err() != nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	done := make(chan struct{})
	c.inflight = done
	env.wg.Add(1)
	go func() {
		defer env.wg.Done()
		ctx, cancel := context.WithTimeout(env.base, env.timeout)
		items, err := fetch(ctx)
		cancel()
		c.mu.Lock()
		changed := false
		if err == nil {
			c.items, c.err = items, nil
			c.gen++
			c.fetchedAt = time.Now()
			c.failedAt = time.Time{}
			c.stale = false
			changed = true
		} else {
			c.err = err
			c.failedAt = time.Now()
		}
		c.inflight = nil
		c.mu.Unlock()
		close(done)
		if env.onDone != nil {
			env.onDone(changed, err)
		}
	}()
	return done
}
