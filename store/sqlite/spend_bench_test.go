package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// BenchmarkInsertSpendLogs measures the spend log's cost per row in batches of 256, the
// spend log writer's default batch.
func BenchmarkInsertSpendLogs(b *testing.B) {
	db, err := sqlite.New(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const batch = 256
	rows := make([]*store.SpendLog, batch)
	meta := []byte(`{"model_id":"d1","model_group":"gpt","deployment":"openai/gpt-x","stream":false}`)
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		for i := range rows {
			rows[i] = &store.SpendLog{RequestID: uuid.Must(uuid.NewV7()).String(), CallType: store.CallCompletion, KeyID: "key1",
				KeyHash: "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b", UserID: fmt.Sprint("user", i%10), TeamID: "team1",
				Model: "gpt", PromptTokens: 12, CompletionTokens: 8, TotalTokens: 20, Spend: 2.8e-5, StartTime: now, EndTime: now,
				Status: "success", Tags: []string{"prod"}, Metadata: meta}
		}
		if err := db.InsertSpendLogs(context.Background(), rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
}
