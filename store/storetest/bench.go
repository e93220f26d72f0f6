package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

// BenchReserveSettle measures one admission against one key's budget: Reserve, then Settle.
// With parallel set, 8 callers per CPU run concurrently (b.RunParallel), as gateway requests
// do; ns/op is then the inverse of throughput.
func BenchReserveSettle(b *testing.B, newStore NewStore, parallel bool) {
	s, ctx := newStore(b), b.Context()
	key := store.BudgetRef{Scope: store.BudgetKey, ID: "bench"}
	must(b, s.UpsertBudgetLimits(ctx, &store.Budget{BudgetRef: key, MaxBudget: ptr(1e12)}))
	refs := []store.BudgetRef{key}
	var n atomic.Int64
	op := func() error {
		id := fmt.Sprintf("r%d", n.Add(1))
		if err := s.Reserve(ctx, id, refs, 0.01, time.Now().Add(time.Minute)); err != nil {
			return err
		}
		return s.Settle(ctx, id, refs, 0.005)
	}
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			must(b, op())
		}
		return
	}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
