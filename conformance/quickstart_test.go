package conformance

// TestQuickstart is the README's first five minutes, as a new user does them: start the gateway
// binary in an empty directory with nothing configured, keep the master key it prints once,
// register server-everything with the README's one curl (the same request, sent from Go), and
// list and call its tools through /mcp with the TypeScript SDK, MCP Inspector (CLI, both eras)
// and Claude Code (`claude mcp add --header ...`, then `claude mcp list`).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// generatedKey matches the master key toolgate prints on its first start.
var generatedKey = regexp.MustCompile(`generated a master key[^\n]*\n\s*\n\s*(sk-\S+)`)

// quickstartEnv is the environment of a user who configured nothing: no database URL, no
// master key, no salt key, no PORT.
func quickstartEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DATABASE_URL", "TOOLGATE_MASTER_KEY", "TOOLGATE_SALT_KEY", "PORT", "TOOLGATE_CONFIG":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func TestQuickstart(t *testing.T) {
	n := requireNode(t)
	bin := gatewayBinary(t)
	if bin == "" {
		bin = goBinary(t, "toolgate", "github.com/toolgate/toolgate/cmd/toolgate")
	}
	work := t.TempDir() // the user's empty directory
	logs := t.TempDir() // process logs, outside it
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	serve := func(name string) *proc {
		p := startProc(t, logs, name, quickstartEnv(), "/bin/sh", "-c", `cd "$1" && shift && exec "$@"`,
			"sh", work, bin, "serve", "--host", "127.0.0.1", "--port", fmt.Sprint(port))
		waitHTTP(t, p, base+"/health/liveliness", 60*time.Second)
		return p
	}

	var everything string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // Node's start overlaps the gateway's
		defer wg.Done()
		everything = startServerEverything(t, n, logs, "streamableHttp") + "/mcp"
	}()
	gw := serve("toolgate-first-start")
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The key is printed once, on stderr.
	out, _ := os.ReadFile(gw.log)
	m := generatedKey.FindSubmatch(out)
	if m == nil {
		t.Fatalf("first start printed no generated master key:\n%s", tail(gw.log, 20))
	}
	key := string(m[1])
	if _, err := os.Stat(filepath.Join(work, "toolgate.db")); err != nil {
		t.Errorf("no DATABASE_URL: want the SQLite store toolgate.db in the working directory: %v", err)
	}

	// The README's curl: POST /v1/mcp/server with the master key.
	body := `{"server_name": "everything", "url": "` + everything + `", "transport": "http"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/mcp/server", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("register server-everything: %d %s", resp.StatusCode, rb)
	}
	var created struct {
		ServerID   string `json:"server_id"`
		ServerName string `json:"server_name"`
	}
	if err := json.Unmarshal(rb, &created); err != nil || created.ServerName != "everything" {
		t.Errorf("register answer %s: want the server back with server_name everything (%v)", rb, err)
	}

	auth := map[string]string{"Authorization": "Bearer " + key}
	waitTools(t, base+"/mcp", auth, "everything-echo", 30*time.Second)
	tg := target{
		Label: "/mcp → server-everything", URL: base + "/mcp", Transport: "http", Headers: auth,
		Tool: "everything-echo", ToolArgs: map[string]any{"message": "hello quickstart"}, WantText: "hello quickstart",
		Resource: "first", Prompt: "everything-simple-prompt",
		ProgressTool: "everything-trigger-long-running-operation", ProgressArgs: map[string]any{"duration": 0.4, "steps": 4},
		MinProgress: 3,
	}

	// The Inspector CLI starts one Node process per operation; the matrix (make interop) reads
	// and prompts with it, here it lists and calls, as the README shows.
	listCall := tg
	listCall.Resource, listCall.Prompt, listCall.ProgressTool = "", "", ""
	clients := []struct {
		name string
		run  func(ctx context.Context, home string) outcomes
	}{
		{"TypeScript SDK", func(ctx context.Context, _ string) outcomes { return runTSClient(ctx, n, tg) }},
		{"Inspector CLI legacy", func(ctx context.Context, home string) outcomes { return runInspector(ctx, n, home, "legacy", listCall) }},
		{"Inspector CLI modern", func(ctx context.Context, home string) outcomes { return runInspector(ctx, n, home, "modern", listCall) }},
		{"Claude Code", func(ctx context.Context, home string) outcomes { return runClaude(ctx, n, home, "toolgate", tg) }},
	}
	t.Run("clients", func(t *testing.T) {
		for _, c := range clients {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				res := c.run(context.Background(), t.TempDir())
				for _, op := range []string{opConnect, opList, opCall} {
					switch o, ok := res[op]; {
					case !ok:
						t.Errorf("%s: not run", op)
					case o.NA:
						t.Logf("%s: n/a (%s)", op, o.Detail)
					case !o.OK:
						t.Errorf("%s: %s", op, o.Detail)
					}
				}
				for _, f := range res.failed() {
					t.Errorf("%s", f)
				}
			})
		}
	})

	// A second start in the same directory prints no key, and the first one still works: only
	// its hash was stored, next to the registered server.
	t.Run("restart", func(t *testing.T) {
		gw.stop()
		again := serve("toolgate-second-start")
		if b, _ := os.ReadFile(again.log); bytes.Contains(b, []byte("generated a master key")) {
			t.Errorf("second start generated another master key:\n%s", tail(again.log, 10))
		}
		if b, _ := os.ReadFile(again.log); bytes.Contains(b, []byte(key)) {
			t.Errorf("second start printed the master key")
		}
		waitTools(t, base+"/mcp", auth, "everything-echo", 30*time.Second)
	})
}
