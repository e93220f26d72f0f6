package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

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

// BenchInsertSpendLogs measures the spend log's cost per row in batches of 256, the spend
// log writer's default batch, with request IDs as the gateway makes them (time-ordered).
func BenchInsertSpendLogs(b *testing.B, newStore NewStore) {
	s, ctx := newStore(b), b.Context()
	const batch = 256
	rows := make([]*store.SpendLog, batch)
	meta := []byte(`{"deployment":"openai/gpt-x","model_group":"gpt","model_id":"d1","stream":false}`)
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		for i := range rows {
			rows[i] = &store.SpendLog{RequestID: uuid.Must(uuid.NewV7()).String(), CallType: store.CallCompletion, KeyID: "key1",
				KeyHash: "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b", UserID: fmt.Sprint("user", i%10), TeamID: "team1",
				Model: "gpt", PromptTokens: 12, CompletionTokens: 8, TotalTokens: 20, Spend: 2.8e-5, StartTime: now, EndTime: now,
				Status: "success", Tags: []string{"prod"}, Metadata: meta}
		}
		must(b, s.InsertSpendLogs(ctx, rows))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
}
