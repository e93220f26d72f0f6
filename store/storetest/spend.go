package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func spendLog(id string, start time.Time) *store.SpendLog {
	return &store.SpendLog{
		RequestID: id, CallType: store.CallCompletion, KeyID: "k1", KeyHash: "h1", KeyAlias: "a1",
		UserID: "u1", TeamID: "t1", OrgID: "o1", EndUser: "end", Model: "gpt-4o",
		PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, Spend: 0.25,
		StartTime: start, EndTime: start.Add(1500 * time.Millisecond), Status: "success",
		Tags: []string{"x"}, Metadata: json.RawMessage(`{"route": "/v1/chat/completions"}`),
	}
}

func testSpend(t *testing.T, newStore NewStore) {
	t.Run("InsertAndFilter", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		logs := []*store.SpendLog{
			spendLog("r0", t0),
			spendLog("r1", t0.Add(1*time.Minute)),
			spendLog("r2", t0.Add(2*time.Minute)),
			spendLog("r3", t0.Add(3*time.Minute)),
		}
		logs[1].KeyID, logs[1].UserID = "k2", "u2"
		logs[2].TeamID, logs[2].OrgID = "t2", "o2"
		logs[3].CallType, logs[3].Model, logs[3].MCPServer, logs[3].MCPTool = store.CallMCPTool, "alpha-echo", "alpha", "echo"
		logs[3].Tags, logs[3].Metadata, logs[3].Status = nil, nil, "failure"
		must(t, s.InsertSpendLogs(ctx, logs))
		must(t, s.InsertSpendLogs(ctx, nil))

		tests := []struct {
			name string
			f    store.SpendFilter
			want []int // newest first
		}{
			{"all", store.SpendFilter{}, []int{3, 2, 1, 0}},
			{"request", store.SpendFilter{RequestID: "r2"}, []int{2}},
			{"key", store.SpendFilter{KeyID: "k2"}, []int{1}},
			{"user", store.SpendFilter{UserID: "u1"}, []int{3, 2, 0}},
			{"team", store.SpendFilter{TeamID: "t2"}, []int{2}},
			{"org", store.SpendFilter{OrgID: "o1"}, []int{3, 1, 0}},
			{"start inclusive", store.SpendFilter{Start: t0.Add(time.Minute)}, []int{3, 2, 1}},
			{"end exclusive", store.SpendFilter{End: t0.Add(2 * time.Minute)}, []int{1, 0}},
			{"window", store.SpendFilter{Start: t0.Add(time.Minute), End: t0.Add(3 * time.Minute)}, []int{2, 1}},
			{"limit", store.SpendFilter{Limit: 1}, []int{3}},
			{"none", store.SpendFilter{KeyID: "nope"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.SpendLogs(ctx, tc.f)
				must(t, err)
				var want []*store.SpendLog
				for _, i := range tc.want {
					want = append(want, logs[i])
				}
				diff(t, "spend logs", got, want, equateJSON)
			})
		}
	})

	t.Run("DuplicatesSkipped", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		first := spendLog("r1", t0)
		must(t, s.InsertSpendLogs(ctx, []*store.SpendLog{first}))

		// A retried batch, with a duplicate inside it too: the first row of each ID wins.
		retry := spendLog("r1", t0.Add(time.Hour))
		retry.Spend = 99
		r2 := spendLog("r2", t0.Add(time.Minute))
		r2dup := spendLog("r2", t0.Add(time.Minute))
		r2dup.Spend = 42
		must(t, s.InsertSpendLogs(ctx, []*store.SpendLog{retry, r2, r2dup}))
		got, err := s.SpendLogs(ctx, store.SpendFilter{})
		must(t, err)
		diff(t, "spend logs", got, []*store.SpendLog{r2, first}, equateJSON)
	})

	t.Run("DefaultLimit", func(t *testing.T) {
		if testing.Short() {
			t.Skip("slow with -short")
		}
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		var logs []*store.SpendLog
		for i := range 1005 {
			logs = append(logs, spendLog(fmt.Sprintf("r%04d", i), t0.Add(time.Duration(i)*time.Second)))
		}
		must(t, s.InsertSpendLogs(ctx, logs))
		got, err := s.SpendLogs(ctx, store.SpendFilter{})
		must(t, err)
		if len(got) != 1000 || got[0].RequestID != "r1004" {
			t.Errorf("SpendLogs with Limit 0: got %d rows, want 1000 starting at r1004", len(got))
		}
	})
}
