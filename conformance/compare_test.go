package conformance

import (
	"strings"
	"testing"
)

func TestCompareSides(t *testing.T) {
	tal := func(dp, df, tp, tf int) map[string]*scenarioTally {
		return map[string]*scenarioTally{"direct": {dp, df}, "through toolgate": {tp, tf}}
	}
	one := func(side string, pass, fail int) map[string]*scenarioTally {
		return map[string]*scenarioTally{side: {pass, fail}}
	}
	tests := []struct {
		name       string
		sides      map[string]*scenarioTally // by side, for scenario "s"
		retried    map[string]*scenarioTally // solo retries by side
		listed     bool
		directOnly bool
		want       string // substring of the only problem; "" for none
	}{
		{"passes both", tal(3, 0, 3, 0), nil, false, false, ""},
		{"worse through gateway", tal(3, 0, 2, 1), nil, false, false, "passes direct but is flaky 2/3 through toolgate"},
		{"never through gateway", tal(3, 0, 0, 3), nil, false, false, "passes direct but is FAIL through toolgate"},
		{"fails direct unlisted", tal(2, 1, 3, 0), nil, false, false, "fails direct (flaky 2/3) but is not in"},
		{"direct only ignores gateway", tal(3, 0, 0, 0), nil, false, true, ""},
		{"listed and flaky both sides", tal(1, 2, 1, 5), nil, true, false, ""},
		{"listed, always fails direct", tal(0, 18, 0, 3), nil, true, false, ""},
		{"listed but never fails: stale", tal(18, 0, 3, 0), nil, true, false, "the file is stale"},
		{"listed, gateway never passes", tal(2, 2, 0, 18), nil, true, false, "never through toolgate"},
		{"direct flake forgiven by its retry", tal(2, 1, 3, 0), one("direct", 1, 0), false, false, ""},
		{"direct failure repeated on retry", tal(2, 1, 3, 0), one("direct", 0, 1), false, false, "failed again when retried alone"},
		{"gateway flake forgiven by its retry", tal(3, 0, 2, 1), one("through toolgate", 1, 0), false, false, ""},
		{"gateway failure repeated on retry", tal(3, 0, 2, 1), one("through toolgate", 0, 1), false, false, "passes direct but is flaky 2/3, failed again when retried alone through toolgate"},
		{"a retry on the other side forgives nothing", tal(3, 0, 2, 1), one("direct", 1, 0), false, false, "through toolgate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tally := map[string]map[string]*scenarioTally{}
			for side, c := range tc.sides {
				tally[side] = map[string]*scenarioTally{"s": c}
			}
			retried := map[string]map[string]*scenarioTally{}
			for side, c := range tc.retried {
				retried[side] = map[string]*scenarioTally{"s": c}
			}
			got := compareSides([]string{"s"}, tally, retried, map[string]bool{"s": tc.listed}, tc.directOnly)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("got problems %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("got problems %q, want one containing %q", got, tc.want)
			}
		})
	}
	t.Run("listed but not in the suite", func(t *testing.T) {
		got := compareSides(nil, nil, nil, map[string]bool{"gone": true}, false)
		if len(got) != 1 || !strings.Contains(got[0], "no such scenario") {
			t.Errorf("got %q, want one stale entry", got)
		}
	})
}
