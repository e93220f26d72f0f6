package conformance

import (
	"context"
	"strings"
	"testing"
)

// TestEndToEnd runs the official TypeScript SDK client (1.32) against a gateway fronting
// server-everything over streamable HTTP and a Go mcp-go server over SSE: list, call, resources,
// prompts and progress, through the single-server routes and the aggregate /mcp route. It needs
// conformance/node_modules (conformance/setup.sh) and skips without it.
func TestEndToEnd(t *testing.T) {
	n := requireNode(t)
	st := startStack(t, n, t.TempDir())
	targets := st.targets()[1:3] // single-server routes over streamable HTTP
	// The aggregate route: federated names of the Go upstream next to server-everything's.
	agg := targets[1]
	agg.Label = "/mcp (aggregate) → Go mcp-go server (sse)"
	agg.URL = st.gw.base + "/mcp"
	agg.Tool, agg.Prompt, agg.ProgressTool = upGo+"-"+goToolEcho, upGo+"-"+goPrompt, upGo+"-"+goToolProgress
	targets = append(targets, agg)

	for _, tg := range targets {
		t.Run(tg.Label, func(t *testing.T) {
			t.Parallel()
			res := runTSClient(context.Background(), n, tg)
			for _, op := range allOps {
				o, ok := res[op]
				switch {
				case !ok:
					t.Errorf("%s: not run", op)
				case !o.OK:
					t.Errorf("%s: %s", op, o.Detail)
				default:
					t.Logf("%s: ok %s", op, o.Detail)
				}
			}
		})
	}
	t.Run("aggregate names", func(t *testing.T) {
		names, err := listToolNames(st.gw.base+"/mcp", map[string]string{"Authorization": "Bearer " + st.gw.key})
		if err != nil {
			t.Fatal(err)
		}
		joined := " " + strings.Join(names, " ") + " "
		for _, want := range []string{upEverything + "-echo", upGo + "-" + goToolEcho, upGo + "-" + goToolProgress} {
			if !strings.Contains(joined, " "+want+" ") {
				t.Errorf("tools/list on /mcp lacks %q; got %v", want, names)
			}
		}
	})
}
