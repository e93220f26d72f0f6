package budget_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/llm/budget/budgettest"
	"github.com/toolgate/toolgate/store"
)

var (
	_ budget.Limiter = (*budget.MemoryLimiter)(nil)
	_ budget.Limiter = (*budget.RedisLimiter)(nil)
)

func limiters(t *testing.T) map[string]budget.Limiter {
	t.Helper()
	out := map[string]budget.Limiter{"memory": budget.NewMemoryLimiter(nil)}
	// TOOLGATE_TEST_REDIS_URL (set by .ci/run) makes Redis required; without it the Redis
	// limiter runs only when one answers on the default port.
	url := os.Getenv("TOOLGATE_TEST_REDIS_URL")
	if url == "" {
		c, err := net.DialTimeout("tcp", "127.0.0.1:6379", 200*time.Millisecond)
		if err != nil {
			t.Logf("redis not reachable and TOOLGATE_TEST_REDIS_URL unset, skipping the redis limiter: %v", err)
			return out
		}
		c.Close()
		url = "redis://127.0.0.1:6379/0"
	}
	rl, err := budget.NewRedisLimiter(url, fmt.Sprintf("toolgate-test:%d:", time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("redis limiter at %s: %v", url, err)
	}
	t.Cleanup(func() { rl.Close() })
	out["redis"] = rl
	return out
}

func TestLimiterRPM(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rules := []budget.Rule{{Scope: store.BudgetKey, ID: "k", RPM: 3}, {Scope: store.BudgetTeam, ID: "t", RPM: 100}}
			for i := range 3 {
				a, err := l.Admit(ctx, rules)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if a.LimitRequests != 3 || a.RemainingRequests != int64(2-i) {
					t.Errorf("request %d: headroom %d of %d, want %d of 3", i, a.RemainingRequests, a.LimitRequests, 2-i)
				}
				a.Done(0)
			}
			_, err := l.Admit(ctx, rules)
			var le *budget.LimitError
			if !errors.As(err, &le) || le.Kind != budget.LimitRPM || le.ID != "k" || le.Limit != 3 {
				t.Fatalf("got %v, want rpm LimitError for key k", err)
			}
			h := http.Header{}
			le.SetHeaders(h)
			if h.Get("Retry-After") == "" || h.Get("x-ratelimit-limit-requests") != "3" || h.Get("x-ratelimit-remaining-requests") != "0" {
				t.Errorf("headers %v", h)
			}
		})
	}
}

func TestLimiterParallel(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rules := []budget.Rule{{Scope: store.BudgetUser, ID: "u", MaxParallel: 4}}
			var inflight, peak, refused atomic.Int64
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a, err := l.Admit(ctx, rules)
					if err != nil {
						refused.Add(1)
						return
					}
					n := inflight.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					time.Sleep(5 * time.Millisecond)
					inflight.Add(-1)
					a.Done(0)
				}()
			}
			wg.Wait()
			if peak.Load() > 4 {
				t.Errorf("peak in flight %d, want <= 4", peak.Load())
			}
			if refused.Load() == 0 {
				t.Errorf("no request refused")
			}
			a, err := l.Admit(ctx, rules)
			if err != nil {
				t.Fatalf("after all done: %v", err)
			}
			a.Done(0)
		})
	}
}

func TestLimiterTPM(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rules := []budget.Rule{{Scope: budget.ScopeDeployment, ID: "d", TPM: 100}}
			a, err := l.Admit(ctx, rules)
			if err != nil {
				t.Fatal(err)
			}
			a.Done(150)
			_, err = l.Admit(ctx, rules)
			var le *budget.LimitError
			if !errors.As(err, &le) || le.Kind != budget.LimitTPM {
				t.Fatalf("got %v, want tpm LimitError", err)
			}
		})
	}
}

func TestRuleFor(t *testing.T) {
	rpm := int64(5)
	if _, ok := budget.RuleFor(store.BudgetKey, "k", store.Limits{}); ok {
		t.Error("empty limits gave a rule")
	}
	r, ok := budget.RuleFor(store.BudgetKey, "k", store.Limits{RPMLimit: &rpm})
	if !ok || r.RPM != 5 {
		t.Errorf("got %+v %v", r, ok)
	}
}

// flakyStore fails the first fails inserts.
type flakyStore struct {
	*budgettest.Store
	fails atomic.Int64
	block chan struct{}
}

func (f *flakyStore) InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error {
	if f.block != nil {
		<-f.block
	}
	if f.fails.Add(-1) >= 0 {
		return errors.New("database down")
	}
	return f.Store.InsertSpendLogs(ctx, logs)
}

func TestSpendLogRetriesAndFlushesOnClose(t *testing.T) {
	fs := &flakyStore{Store: budgettest.New()}
	fs.fails.Store(3)
	sl, err := budget.NewSpendLog(budget.SpendLogConfig{Store: fs, BatchSize: 10, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 25 {
		if err := sl.Write(ctx, &store.SpendLog{RequestID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sl.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := fs.SpendLogs(ctx, store.SpendFilter{})
	if len(got) != 25 {
		t.Errorf("got %d rows, want 25", len(got))
	}
	if err := sl.Write(ctx, &store.SpendLog{RequestID: "late"}); !errors.Is(err, budget.ErrClosed) {
		t.Errorf("write after close: got %v, want ErrClosed", err)
	}
}

func TestSpendLogBackPressure(t *testing.T) {
	fs := &flakyStore{Store: budgettest.New(), block: make(chan struct{})}
	sl, err := budget.NewSpendLog(budget.SpendLogConfig{Store: fs, BatchSize: 1, QueueSize: 2, Interval: time.Millisecond,
		MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// One row is held by the blocked writer, two fill the queue; the next must wait.
	for i := range 3 {
		if err := sl.Write(ctx, &store.SpendLog{RequestID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := sl.Write(short, &store.SpendLog{RequestID: "4"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write to a full queue: got %v, want DeadlineExceeded", err)
	}
	if err := sl.Write(ctx, &store.SpendLog{RequestID: "5"}); !errors.Is(err, budget.ErrQueueFull) {
		t.Fatalf("write to a queue full for longer than MaxWait: got %v, want ErrQueueFull", err)
	}
	close(fs.block)
	if err := sl.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := fs.SpendLogs(ctx, store.SpendFilter{})
	if len(got) != 3 {
		t.Errorf("got %d rows, want 3", len(got))
	}
}
