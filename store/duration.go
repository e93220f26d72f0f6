package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// NextBudgetReset returns when a budget with the given BudgetDuration that starts at from
// next resets. Durations are LiteLLM's: a positive integer followed by s, m, h, d, w or mo
// (calendar months), e.g. "30s", "1h", "30d", "1mo". The empty duration never resets: the
// zero time and a nil error.
func NextBudgetReset(duration string, from time.Time) (time.Time, error) {
	if duration == "" {
		return time.Time{}, nil
	}
	unit := strings.TrimLeft(duration, "0123456789")
	n, err := strconv.Atoi(strings.TrimSuffix(duration, unit))
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("budget duration %q: want a positive number and a unit (s, m, h, d, w, mo)", duration)
	}
	switch unit {
	case "s":
		return from.Add(time.Duration(n) * time.Second), nil
	case "m":
		return from.Add(time.Duration(n) * time.Minute), nil
	case "h":
		return from.Add(time.Duration(n) * time.Hour), nil
	case "d":
		return from.AddDate(0, 0, n), nil
	case "w":
		return from.AddDate(0, 0, 7*n), nil
	case "mo":
		return from.AddDate(0, n, 0), nil
	}
	return time.Time{}, fmt.Errorf("budget duration %q: unknown unit %q (want s, m, h, d, w or mo)", duration, unit)
}
