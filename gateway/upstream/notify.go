package upstream

import (
	"context"
	"sync"
)

// notifier runs callbacks (Config.OnListChanged, Config.OnHealth) in order
// on one goroutine, so that upstream reader goroutines never block on them.
type notifier struct {
	mu   sync.Mutex
	q    []func()
	wake chan struct{}
}

func newNotifier() *notifier {
	return &notifier{wake: make(chan struct{}, 1)}
}

// post queues fn. It never blocks.
func (n *notifier) post(fn func()) {
	n.mu.Lock()
	n.q = append(n.q, fn)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run executes queued callbacks until ctx ends.
func (n *notifier) run(ctx context.Context) {
	for {
		n.mu.Lock()
		q := n.q
		n.q = nil
		n.mu.Unlock()
		for _, fn := range q {
			fn()
		}
		select {
		case <-n.wake:
		case <-ctx.Done():
			return
		}
	}
}
