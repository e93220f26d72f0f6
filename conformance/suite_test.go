package conformance

// This file runs the official MCP conformance suite (npm @modelcontextprotocol/conformance
// 0.1.16, server scenarios) against mcp-go v1.2.1's conformance fixture, directly and through
// toolgate's single-server route, and compares the two. Run it with `make conformance`.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// expectedFailuresFile lists scenarios that fail (at least sometimes) directly against the
// fixture. Nothing else may fail, on either side.
const expectedFailuresFile = "expected-failures.yml"

// summaryLine matches the suite's "✓ name: 1 passed, 0 failed" lines.
var summaryLine = regexp.MustCompile(`^([✓✗])\s+(\S+):\s+(\d+) passed, (\d+) failed`)

// scenarioTally counts how often a scenario passed and failed on one side.
type scenarioTally struct{ pass, fail int }

func (s scenarioTally) String() string {
	switch {
	case s.pass+s.fail == 0:
		return "not run"
	case s.fail == 0:
		return "pass"
	case s.pass == 0:
		return "FAIL"
	default:
		return fmt.Sprintf("flaky %d/%d", s.pass, s.pass+s.fail)
	}
}

// suiteRunner runs the conformance CLI under Node 22.
type suiteRunner struct {
	n      nodeEnv
	outDir string
}

// scenarioResult is one scenario's outcome in one run.
type scenarioResult struct {
	name string
	ok   bool
}

// run runs the suite (or one scenario) against url and returns each scenario's result in
// the suite's order.
func (r suiteRunner) run(ctx context.Context, url, scenario string) ([]scenarioResult, string, error) {
	cli := filepath.Join(r.n.modules, "@modelcontextprotocol", "conformance", "dist", "index.js")
	args := []string{r.n.node, cli, "server", "--url", url, "-o", r.outDir}
	if scenario != "" {
		args = append(args, "--scenario", scenario)
	}
	stdout, stderr, err := runCmd(ctx, r.n.dir, r.n.env(), 5*time.Minute, args...)
	out := stdout + stderr
	var res []scenarioResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := summaryLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			failed, _ := strconv.Atoi(m[4])
			res = append(res, scenarioResult{m[2], m[1] == "✓" && failed == 0})
		}
	}
	if scenario != "" && len(res) == 0 {
		// A single-scenario run prints "Passed: 1/1, 0 failed, ..." instead of a summary.
		switch {
		case strings.Contains(out, ", 0 failed"):
			res = append(res, scenarioResult{scenario, true})
		case strings.Contains(out, "failed"):
			res = append(res, scenarioResult{scenario, false})
		}
	}
	if len(res) == 0 {
		return nil, out, fmt.Errorf("no scenario results (exit: %v)", err)
	}
	return res, out, nil
}

// readExpectedFailures reads the server scenarios listed in expected-failures.yml.
func readExpectedFailures(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Server []string `yaml:"server"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := map[string]bool{}
	for _, s := range f.Server {
		m[s] = true
	}
	return m, nil
}

// TestConformanceSuite is `make conformance`. It is skipped unless TOOLGATE_CONFORMANCE=1.
// CONFORMANCE_RUNS (default 3) sets how many full runs each side gets;
// CONFORMANCE_DIRECT_ONLY=1 skips the gateway (to check the fixture and the harness alone).
func TestConformanceSuite(t *testing.T) {
	if os.Getenv("TOOLGATE_CONFORMANCE") != "1" {
		t.Skip("set TOOLGATE_CONFORMANCE=1 (make conformance) to run the official conformance suite")
	}
	n := requireNode(t)
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("CONFORMANCE_RUNS")); err == nil && v > 0 {
		runs = v
	}
	directOnly := os.Getenv("CONFORMANCE_DIRECT_ONLY") == "1"
	expected, err := readExpectedFailures(filepath.Join(n.dir, expectedFailuresFile))
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	outDir := filepath.Join(n.dir, "results", time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := suiteRunner{n: n, outDir: outDir}
	ctx := context.Background()

	directURL := startFixture(t, work)
	sides := []struct{ name, url string }{{"direct", directURL}}
	if !directOnly {
		g := startGateway(t, work, upstreamConfig{Name: "fixture", URL: directURL, Transport: "http", Keyless: true})
		throughURL := g.base + "/mcp/fixture"
		// The suite sends no credentials: the keyless opt-in must let it through.
		waitTools(t, throughURL, nil, "test_simple_text", 30*time.Second)
		sides = append(sides, struct{ name, url string }{"through toolgate", throughURL})
	}

	tally := map[string]map[string]*scenarioTally{} // side -> scenario -> tally
	var order []string
	seen := map[string]bool{}
	record := func(side string, res []scenarioResult) {
		if tally[side] == nil {
			tally[side] = map[string]*scenarioTally{}
		}
		for _, sr := range res {
			s, ok := sr.name, sr.ok
			if !seen[s] {
				seen[s] = true
				order = append(order, s)
			}
			tt := tally[side][s]
			if tt == nil {
				tt = &scenarioTally{}
				tally[side][s] = tt
			}
			if ok {
				tt.pass++
			} else {
				tt.fail++
			}
		}
	}
	for i := 0; i < runs; i++ {
		for _, sd := range sides {
			res, out, err := r.run(ctx, sd.url, "")
			if err != nil {
				t.Fatalf("%s run %d: %v\n%s", sd.name, i+1, err, out)
			}
			record(sd.name, res)
		}
	}
	// A scenario that is not listed but failed a full run on one side is retried alone once
	// on that side before it is judged: the suite's own timing (a notification racing its
	// response, a slow Node start) must not turn CI red at random. A failure that repeats is
	// real. Retries are shown in the table and kept apart from the full-run counts.
	retried := map[string]map[string]*scenarioTally{}
	for _, sd := range sides {
		for _, s := range order {
			if expected[s] || get(tally, sd.name, s).fail == 0 {
				continue
			}
			res, _, err := r.run(ctx, sd.url, s)
			if retried[sd.name] == nil {
				retried[sd.name] = map[string]*scenarioTally{}
			}
			rt := &scenarioTally{}
			retried[sd.name][s] = rt
			if err == nil && len(res) == 1 && res[0].ok {
				rt.pass++
			} else {
				rt.fail++
			}
		}
	}
	// Listed scenarios are flaky upstream: rerun them alone until each side has shown what
	// matters: direct, both a failure (else the entry is stale) and a pass (else there is
	// nothing to hold the gateway to); through toolgate, a pass whenever direct had one.
	const extra = 20
	for s := range expected {
		d := get(tally, "direct", s)
		for i := 0; i < extra && (d.fail == 0 || d.pass == 0); i++ {
			res, _, err := r.run(ctx, directURL, s)
			if err == nil {
				record("direct", res)
			}
			d = get(tally, "direct", s)
		}
		if directOnly {
			continue
		}
		th := get(tally, "through toolgate", s)
		for i := 0; i < extra && d.pass > 0 && th.pass == 0; i++ {
			res, _, err := r.run(ctx, sides[1].url, s)
			if err == nil {
				record("through toolgate", res)
			}
			th = get(tally, "through toolgate", s)
		}
	}

	problems := compareSides(order, tally, retried, expected, directOnly)

	table := conformanceTable(order, tally, retried, expected, directOnly, runs)
	fmt.Println(table)
	_ = os.WriteFile(filepath.Join(outDir, "table.md"), []byte(table), 0o644)
	if !directOnly {
		doc := "# Conformance: direct vs through toolgate\n\n" +
			"Generated by `make conformance` (conformance/suite_test.go) on " + time.Now().UTC().Format("2006-01-02 15:04 MST") + ".\n" +
			"Official suite `@modelcontextprotocol/conformance` 0.1.16, server scenarios (active suite), " +
			"against mcp-go v1.2.1's `examples/conformance` fixture, directly and through toolgate's single-server route " +
			"`/mcp/fixture` (keyless opt-in; gateway: " + gatewayKind() + "). Each side ran the whole suite " + strconv.Itoa(runs) + " times; " +
			"any other scenario that failed a run on one side was retried alone once there before being judged; " +
			"scenarios in `expected-failures.yml` were rerun alone up to " + strconv.Itoa(extra) + " more times.\n\n" + table
		if len(problems) > 0 {
			doc += "\nProblems (the run failed):\n\n- " + strings.Join(problems, "\n- ") + "\n"
		} else {
			doc += "\nNo scenario is worse through toolgate than direct.\n"
		}
		if err := os.WriteFile(filepath.Join(n.dir, "CONFORMANCE.md"), []byte(doc), 0o644); err != nil {
			t.Error(err)
		}
	}
	fmt.Printf("results: %s\n", outDir)
	for _, p := range problems {
		t.Error(p)
	}
}

// compareSides applies the rules: a scenario not listed in expected-failures.yml must pass
// every run on both sides, except that a failed run is forgiven when the scenario, retried
// alone once on that side (retried), passed; a listed one must fail direct at least once
// (else the entry is stale) and, if it ever passes direct, pass through toolgate at least
// once. order lists the scenarios the suite ran; tally holds the "direct" and "through
// toolgate" counts of the full runs (and the listed scenarios' reruns).
func compareSides(order []string, tally, retried map[string]map[string]*scenarioTally, expected map[string]bool, directOnly bool) []string {
	var problems []string
	seen := map[string]bool{}
	// ok: the side passed every full run, or passed its retry.
	ok := func(side, s string) bool {
		t := get(tally, side, s)
		if t.pass+t.fail == 0 {
			return false
		}
		return t.fail == 0 || get(retried, side, s).pass > 0
	}
	for _, s := range order {
		seen[s] = true
		d := get(tally, "direct", s)
		th := get(tally, "through toolgate", s)
		if !expected[s] {
			switch {
			case !ok("direct", s):
				problems = append(problems, fmt.Sprintf("%s fails direct (%s%s) but is not in %s", s, d, retryNote(retried, "direct", s), expectedFailuresFile))
			case !directOnly && !ok("through toolgate", s):
				problems = append(problems, fmt.Sprintf("%s passes direct but is %s%s through toolgate", s, th, retryNote(retried, "through toolgate", s)))
			}
			continue
		}
		if d.fail == 0 {
			problems = append(problems, fmt.Sprintf("%s is listed in %s but passed all %d direct runs: the file is stale", s, expectedFailuresFile, d.pass))
		}
		if !directOnly && d.pass > 0 && th.pass == 0 {
			problems = append(problems, fmt.Sprintf("%s passes direct (%s) but never through toolgate (%s)", s, d, th))
		}
	}
	var missing []string
	for s := range expected {
		if !seen[s] {
			missing = append(missing, s)
		}
	}
	sort.Strings(missing)
	for _, s := range missing {
		problems = append(problems, fmt.Sprintf("%s is listed in %s but the suite has no such scenario: the file is stale", s, expectedFailuresFile))
	}
	return problems
}

// retryNote describes a scenario's solo retry on side, if it had one.
func retryNote(retried map[string]map[string]*scenarioTally, side, s string) string {
	t := get(retried, side, s)
	switch {
	case t.pass > 0:
		return ", passed when retried alone"
	case t.fail > 0:
		return ", failed again when retried alone"
	}
	return ""
}

// gatewayKind says how the gateway under test ran.
func gatewayKind() string {
	if b := os.Getenv("TOOLGATE_BIN"); b != "" {
		return "`toolgate serve` binary"
	}
	return "in-process `gateway.New`"
}

func get(tally map[string]map[string]*scenarioTally, side, s string) scenarioTally {
	if t := tally[side][s]; t != nil {
		return *t
	}
	return scenarioTally{}
}

// conformanceTable renders "scenario | direct | through toolgate" as Markdown.
func conformanceTable(order []string, tally, retried map[string]map[string]*scenarioTally, expected map[string]bool, directOnly bool, runs int) string {
	var b strings.Builder
	b.WriteString("| scenario | direct | through toolgate |\n|---|---|---|\n")
	dp, tp := 0, 0
	for _, s := range order {
		d := get(tally, "direct", s)
		dc := d.String() + retryNote(retried, "direct", s)
		th := "skipped"
		if !directOnly {
			th = get(tally, "through toolgate", s).String() + retryNote(retried, "through toolgate", s)
		}
		note := ""
		if expected[s] {
			note = " (expected-failures.yml)"
		}
		if d.fail == 0 && d.pass > 0 {
			dp++
		}
		if tt := get(tally, "through toolgate", s); tt.fail == 0 && tt.pass > 0 {
			tp++
		}
		fmt.Fprintf(&b, "| %s%s | %s | %s |\n", s, note, dc, th)
	}
	fmt.Fprintf(&b, "\nScenarios passing every run: direct %d/%d, through toolgate %d/%d (runs per side: %d).\n",
		dp, len(order), tp, len(order), runs)
	return b.String()
}
