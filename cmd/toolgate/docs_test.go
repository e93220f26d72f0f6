package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/gateway"
	"github.com/toolgate/toolgate/llm"
)

// allYAMLKeys returns the dotted YAML keys of struct type t, nested structs (and lists and
// maps of them) included, each prefixed with prefix.
func allYAMLKeys(t reflect.Type, prefix string) []string {
	var out []string
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			if strings.Contains(opts, "inline") {
				out = append(out, allYAMLKeys(f.Type, prefix)...)
			}
			continue
		}
		out = append(out, prefix+name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			out = append(out, allYAMLKeys(ft, prefix+name+".")...)
		}
	}
	return out
}

// sourceStrings returns, from the functions named in funcs in file, the string literals
// that are switch cases on k (config keys) or the first argument of a getenv call
// (environment variables).
func sourceStrings(t *testing.T, file string, funcs ...string) (cases, envs []string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	lit := func(e ast.Expr) (string, bool) {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			s, err := strconv.Unquote(b.Value)
			return s, err == nil
		}
		return "", false
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || !contains(funcs, fd.Name.Name) {
			continue
		}
		ast.Inspect(fd, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SwitchStmt:
				if id, ok := n.Tag.(*ast.Ident); ok && id.Name == "k" {
					for _, c := range n.Body.List {
						for _, e := range c.(*ast.CaseClause).List {
							if s, ok := lit(e); ok {
								cases = append(cases, s)
							}
						}
					}
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "getenv" && len(n.Args) == 1 {
					if s, ok := lit(n.Args[0]); ok {
						envs = append(envs, s)
					}
				}
			case *ast.CompositeLit:
				// for _, name := range []string{"PORT", "TOOLGATE_PORT"} { getenv(name) }
				for _, e := range n.Elts {
					if s, ok := lit(e); ok && s == strings.ToUpper(s) && strings.Contains(s, "PORT") {
						envs = append(envs, s)
					}
				}
			}
			return true
		})
	}
	return cases, envs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestOperationsDocListsEveryKey fails when a config key or environment variable that the
// code reads is missing from the configuration reference in docs/operations.md.
func TestOperationsDocListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	cases, envs := sourceStrings(t, "config.go", "parseConfigFile", "applyEnv", "loadConfig")
	_, tracingEnvs := sourceStrings(t, "tracing.go", "tracingWanted")
	envs = append(append(envs, tracingEnvs...), "TOOLGATE_CONFIG")

	var want []string
	for _, k := range cases {
		switch k {
		case "environment_variables", "callback_settings", "credential_list", "guardrails", "search_tools", "vector_store_registry":
			continue // LiteLLM sections toolgate ignores
		}
		want = append(want, "general_settings."+k)
	}
	want = append(want, allYAMLKeys(reflect.TypeFor[gateway.OAuthConfig](), "general_settings.")...)
	want = append(want, allYAMLKeys(reflect.TypeFor[mcpServerConfig](), "mcp_servers.NAME.")...)
	want = append(want, allYAMLKeys(reflect.TypeFor[llm.RouterSettings](), "router_settings.")...)
	want = append(want, allYAMLKeys(reflect.TypeFor[llm.ModelConfig](), "model_list[].")...)
	// litellm_settings keys the gateway reads (gateway/llm_routes.go, tracing.go).
	want = append(want, "litellm_settings.callbacks", "litellm_settings.budget_alert_webhook", "litellm_settings.redis_url")
	if len(cases) < 10 || len(envs) < 8 {
		t.Fatalf("found only %d general_settings keys and %d environment variables in the source: is the scan broken?", len(cases), len(envs))
	}
	sort.Strings(want)
	var missing []string
	for _, k := range want {
		if !strings.Contains(doc, "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	for _, e := range envs {
		if !strings.Contains(doc, "`"+e+"`") {
			missing = append(missing, "env "+e)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/operations.md does not document (as `key`):\n  %s", strings.Join(missing, "\n  "))
	}
}
