package toolgate_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// rules lists, per package prefix, the module-internal packages it may import. Dependencies
// point one way: cmd -> gateway -> {oauth, toolsets, llm} -> store. Sub-packages of gateway
// (gateway/...) belong to gateway. Test-only imports are not checked.
var rules = map[string][]string{
	"store":           {},
	"store/sqlite":    {"store"},
	"store/postgres":  {"store"},
	"store/storetest": {"store"},
	"internal/":       {"store", "internal/"},
	"toolsets":        {"store", "internal/"},
	"oauth":           {"store", "internal/"},
	"llm/budget":      {"store", "internal/"},
	"llm":             {"llm/", "store", "internal/"},
	"gateway":         {"gateway/", "oauth", "toolsets", "llm", "llm/", "store", "internal/"},
	"conformance":     {"gateway", "gateway/", "store", "store/", "internal/", "oauth", "toolsets", "llm", "llm/"},
	"cmd/toolgate":    {"gateway", "gateway/", "oauth", "toolsets", "llm", "llm/", "store", "store/", "internal/"},
}

// thirdParty lists packages that only some of ours may import (STYLE rule 19).
var thirdParty = map[string][]string{
	"github.com/mark3labs/mcp-go/server": {"gateway", "conformance", "cmd/toolgate"},
	"github.com/mark3labs/mcp-go/client": {"gateway", "conformance", "cmd/toolgate"},
}

const module = "github.com/toolgate/toolgate"

func TestDependenciesPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue
		}
		allowed, ok := ruleFor(rel)
		if !ok {
			t.Errorf("package %s has no dependency rule; add one to deps_test.go", rel)
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") {
				dep := strings.TrimPrefix(imp, module+"/")
				if dep == rel || strings.HasPrefix(dep, rel+"/") {
					continue // a package may use its own sub-packages
				}
				if !matches(dep, allowed) {
					t.Errorf("%s imports %s, which it may not", rel, dep)
				}
				continue
			}
			for tp, who := range thirdParty {
				if imp == tp || strings.HasPrefix(imp, tp+"/") {
					if !matches(rel, who) && !matchesSub(rel, who) {
						t.Errorf("%s imports %s; only %v may", rel, imp, who)
					}
				}
			}
		}
	}
}

// ruleFor finds the most specific rule for a package.
func ruleFor(rel string) ([]string, bool) {
	best, bestLen := []string(nil), -1
	for prefix, allowed := range rules {
		p := strings.TrimSuffix(prefix, "/")
		if (rel == p || strings.HasPrefix(rel, p+"/")) && len(p) > bestLen {
			best, bestLen = allowed, len(p)
		}
	}
	return best, bestLen >= 0
}

func matches(dep string, allowed []string) bool {
	for _, a := range allowed {
		if strings.HasSuffix(a, "/") {
			if strings.HasPrefix(dep, a) {
				return true
			}
		} else if dep == a {
			return true
		}
	}
	return false
}

func matchesSub(rel string, who []string) bool {
	for _, w := range who {
		if strings.HasPrefix(rel, w+"/") {
			return true
		}
	}
	return false
}
