package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIdentityEndToEnd: two virtual keys made through /key/generate with different grants
// each list tools through the official TypeScript SDK client (1.32) on /mcp and see exactly
// their grant; a call to a tool outside the grant fails, one inside succeeds. It needs
// conformance/node_modules (conformance/setup.sh) and skips without it.
func TestIdentityEndToEnd(t *testing.T) {
	n := requireNode(t)
	dir := t.TempDir()
	// Two Go upstreams (echo and count each) over SSE, as config-file servers.
	gw := startGateway(t, dir,
		upstreamConfig{Name: "alpha", URL: startGoSSEUpstream(t), Transport: "sse"},
		upstreamConfig{Name: "beta", URL: startGoSSEUpstream(t), Transport: "sse"})
	master := map[string]string{"Authorization": "Bearer " + gw.key}
	waitTools(t, gw.base+"/mcp", master, "alpha-"+goToolEcho, 30*time.Second)
	waitTools(t, gw.base+"/mcp", master, "beta-"+goToolEcho, 30*time.Second)

	keyA := generateKey(t, gw, map[string]any{"key_alias": "e2e-a",
		"object_permission": map[string]any{"mcp_servers": []string{"alpha"}}})
	keyB := generateKey(t, gw, map[string]any{"key_alias": "e2e-b",
		"object_permission": map[string]any{"mcp_servers": []string{"beta"}, "mcp_tool_permissions": map[string]any{"beta": []string{goToolEcho}}}})

	for _, tc := range []struct {
		name      string
		key       string
		url       string
		transport string
		want      []string // tools/list, sorted
		call      string   // granted: succeeds
		refused   []string // not granted: fail
	}{
		{"key A (mcp_servers alpha)", keyA, "/mcp", "http",
			[]string{"alpha-" + goToolProgress, "alpha-" + goToolEcho}, "alpha-" + goToolEcho,
			[]string{"beta-" + goToolEcho, "beta-" + goToolProgress}},
		{"key B (beta, tool permissions echo)", keyB, "/mcp", "http",
			[]string{"beta-" + goToolEcho}, "beta-" + goToolEcho,
			[]string{"beta-" + goToolProgress, "alpha-" + goToolEcho}},
		{"key B over legacy SSE", keyB, "/mcp/sse", "sse",
			[]string{"beta-" + goToolEcho}, "beta-" + goToolEcho,
			[]string{"alpha-" + goToolEcho}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			headers := map[string]string{"Authorization": "Bearer " + tc.key}
			res := runTSIdentity(t, n, gw.base+tc.url, tc.transport, headers, tc.call)
			if !res.ok("initialize") {
				t.Fatalf("initialize: %s", res.Ops["initialize"].Error)
			}
			got := slices.Sorted(slices.Values(res.Ops["tools/list"].Names))
			if want := slices.Sorted(slices.Values(tc.want)); !slices.Equal(got, want) {
				t.Errorf("tools/list: got %v, want %v", got, want)
			}
			if !res.ok("tools/call") || !strings.Contains(res.Ops["tools/call"].Text, "Echo: identity-e2e") {
				t.Errorf("granted call %s: %+v", tc.call, res.Ops["tools/call"])
			}
			for _, name := range tc.refused {
				r := runTSIdentity(t, n, gw.base+tc.url, tc.transport, headers, name)
				switch e := r.Ops["tools/call"].Error; {
				case r.ok("tools/call"):
					t.Errorf("call %s outside the grant succeeded: %+v", name, r.Ops["tools/call"])
				case !strings.Contains(e, "not found"):
					t.Errorf("call %s outside the grant: got %q, want a tool-not-found refusal", name, e)
				default:
					t.Logf("call %s refused: %s", name, e)
				}
			}
		})
	}
}

// generateKey makes a virtual key with the master key and returns its secret.
func generateKey(tb testing.TB, g *gateway, body map[string]any) string {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, g.base+"/key/generate", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || !strings.HasPrefix(out.Key, "sk-") {
		tb.Fatalf("/key/generate: %d %s", resp.StatusCode, raw)
	}
	return out.Key
}

// tsIdentityResult is clients/ts-client.mjs's output line.
type tsIdentityResult struct {
	OK  bool `json:"ok"`
	Ops map[string]struct {
		OK    bool     `json:"ok"`
		Error string   `json:"error"`
		Names []string `json:"names"`
		Text  string   `json:"text"`
	} `json:"ops"`
}

func (r tsIdentityResult) ok(op string) bool {
	o, found := r.Ops[op]
	return found && o.OK
}

// runTSIdentity connects the TypeScript SDK client to url with headers, lists tools and
// calls tool with {"message": "identity-e2e"}.
func runTSIdentity(t *testing.T, n nodeEnv, url, transport string, headers map[string]string, tool string) tsIdentityResult {
	t.Helper()
	args := []string{n.node, filepath.Join(n.dir, "clients", "ts-client.mjs"),
		"--url", url, "--transport", transport, "--timeout", "15000",
		"--tool", tool, "--tool-args", `{"message":"identity-e2e"}`}
	args = append(args, headerFlags("--header", headers)...)
	stdout, stderr, err := runCmd(context.Background(), n.dir, n.env(), 100*time.Second, args...)
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	var res tsIdentityResult
	if jerr := json.Unmarshal([]byte(line), &res); jerr != nil {
		t.Fatalf("ts-client gave no result (%v): %s %s", err, stdout, lastLine(stderr))
	}
	return res
}
