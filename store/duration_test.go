package store_test

import (
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func TestNextBudgetReset(t *testing.T) {
	from := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		duration string
		want     time.Time
		wantErr  bool
	}{
		{"", time.Time{}, false},
		{"30s", from.Add(30 * time.Second), false},
		{"15m", from.Add(15 * time.Minute), false},
		{"24h", from.Add(24 * time.Hour), false},
		{"30d", time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), false},
		{"2w", time.Date(2026, 2, 14, 10, 0, 0, 0, time.UTC), false},
		{"1mo", time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), false}, // Go's AddDate normalises Feb 31
		{"0d", time.Time{}, true},
		{"-1d", time.Time{}, true},
		{"d", time.Time{}, true},
		{"30", time.Time{}, true},
		{"30y", time.Time{}, true},
		{"soon", time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.duration, func(t *testing.T) {
			got, err := store.NextBudgetReset(tc.duration, from)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tc.wantErr)
			}
			if !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
