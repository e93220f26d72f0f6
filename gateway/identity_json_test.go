package gateway

import (
	"errors"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

func TestParseLiteLLMDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"15m", 15 * time.Minute, true},
		{"24h", 24 * time.Hour, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"1mo", 30 * 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"99999999999999999d", 0, false},
	}
	for _, tc := range tests {
		got, err := parseLiteLLMDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLiteLLMDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestReadObject(t *testing.T) {
	tests := []struct {
		body    string
		wantErr string
	}{
		{`{"a": 1}`, ""},
		{``, ""},
		{`{"a": 1, "zz": 2, "b": 3}`, "unknown field(s): b, zz"},
		{`{"a": 1} {"a": 2}`, "more than one value"},
		{`null`, "want an object"},
		{`[1]`, "malformed"},
		{`{"a":`, "malformed"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		_, err := readObject(r, "a")
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.body, err)
			}
			continue
		}
		var he *Error
		if !errors.As(err, &he) || he.Status != 400 || !strings.Contains(he.Message, tc.wantErr) {
			t.Errorf("%s: got %v, want 400 containing %q", tc.body, err, tc.wantErr)
		}
	}
}

func FuzzReadObject(f *testing.F) {
	f.Add(`{"key": "sk-1", "user_id": null, "object_permission": {"mcp_servers": ["a"]}}`)
	f.Add(`{"max_budget": 1e400}`)
	f.Add(`{"key_alias": "\u0000"}`)
	f.Add(`{"model_max_budget": {"gpt-4o": {"budget_limit": "0.5", "time_period": "1d"}, "o3": 2}}`)
	f.Fuzz(func(t *testing.T, in string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(in))
		b, err := readObject(r, keyFields...)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Status != 400 {
				t.Fatalf("non-400 error %v", err)
			}
			return
		}
		var lim store.Limits
		if err := b.limits(&lim); err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Status != 400 {
				t.Fatalf("limits: non-400 error %v", err)
			}
		}
		if _, err := b.permission(); err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Status != 400 {
				t.Fatalf("permission: non-400 error %v", err)
			}
		}
		caps, err := b.modelMaxBudget()
		if err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Status != 400 {
				t.Fatalf("model_max_budget: non-400 error %v", err)
			}
		}
		for model, c := range caps {
			if model == "" || c.MaxBudget < 0 || math.IsInf(c.MaxBudget, 0) || math.IsNaN(c.MaxBudget) {
				t.Fatalf("model_max_budget accepted %q: %+v", model, c)
			}
			if _, err := store.NextBudgetReset(c.Duration, time.Now()); err != nil {
				t.Fatalf("model_max_budget accepted a period the store refuses: %q: %v", c.Duration, err)
			}
		}
	})
}
