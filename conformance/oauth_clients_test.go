package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browserWrapper writes an executable that clients run as $BROWSER (with the URL as its one
// argument): it signs in on the gateway's page with key through headless chromium.
func browserWrapper(tb testing.TB, n nodeEnv, dir, key string) (path, log string) {
	tb.Helper()
	path = filepath.Join(dir, "fake-browser")
	log = filepath.Join(dir, "browser.log")
	script := fmt.Sprintf("#!/bin/sh\nTOOLGATE_LOGIN_KEY=%q TOOLGATE_BROWSER_LOG=%q exec %q %q \"$1\" >/dev/null 2>&1\n",
		key, log, n.node, filepath.Join(n.dir, "oauth_browser.mjs"))
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		tb.Fatal(err)
	}
	return path, log
}

// TestOAuthClaudeCode adds the OAuth-protected gateway to Claude Code (2.1.332) and logs in
// headlessly: `claude mcp list` first reports that the server needs authentication, then
// `claude mcp login` (under script(1) for a TTY, $BROWSER being headless chromium typing a
// toolgate key into the gateway's sign-in page) registers, authorizes with PKCE and gets a
// token, and `claude mcp list` reports the server connected.
func TestOAuthClaudeCode(t *testing.T) {
	n := requireNode(t)
	requireChromium(t)
	scriptBin := lookPath(t, "script")
	claude := filepath.Join(n.modules, "@anthropic-ai", "claude-code-linux-x64", "claude")
	if _, err := os.Stat(claude); err != nil {
		t.Fatalf("claude binary missing from node_modules: %v", err)
	}
	dir := t.TempDir()
	goURL := startGoSSEUpstream(t)
	g := startOAuthGateway(t, dir, upstreamConfig{Name: upGo, URL: goURL, Transport: "sse"})
	waitTools(t, g.base+"/"+upGo+"/mcp", map[string]string{"Authorization": "Bearer " + g.key}, goToolEcho, 30*time.Second)
	key := g.newKey(t, "claude-code-user", upGo)

	home := filepath.Join(dir, "home")
	work := filepath.Join(dir, "project")
	for _, d := range []string{home, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	browser, browserLog := browserWrapper(t, n, dir, key)
	env := n.env("HOME="+home, "CLAUDE_CONFIG_DIR="+filepath.Join(home, ".claude"),
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "BROWSER="+browser, "TERM=dumb")
	run := func(timeout time.Duration, argv ...string) string {
		t.Helper()
		stdout, stderr, err := runCmd(context.Background(), work, env, timeout, argv...)
		t.Logf("$ %s\n%s%s", strings.Join(argv[len(argv)-min(len(argv), 4):], " "), stdout, stderr)
		if err != nil {
			t.Logf("exit: %v", err)
		}
		return stdout + stderr
	}
	run(30*time.Second, claude, "mcp", "add", "--transport", "http", "gw", g.base+"/"+upGo+"/mcp")
	if out := run(60*time.Second, claude, "mcp", "list"); !strings.Contains(out, "Needs authentication") {
		t.Fatalf("claude mcp list before login: want \"Needs authentication\", got:\n%s", out)
	}
	out := run(90*time.Second, scriptBin, "-q", "-e", "-c", claude+" mcp login gw", "/dev/null")
	if !strings.Contains(out, "Authenticated") {
		b, _ := os.ReadFile(browserLog)
		t.Fatalf("claude mcp login: want \"Authenticated\", got:\n%s\nbrowser: %s", out, b)
	}
	if out := run(60*time.Second, claude, "mcp", "list"); !regexp.MustCompile(`gw: .*Connected`).MatchString(out) {
		t.Errorf("claude mcp list after login: want gw Connected, got:\n%s", out)
	}
}

// TestOAuthInspectorCLI runs MCP Inspector's CLI (2.12) against the OAuth-protected gateway:
// with MCP_AUTO_OPEN_ENABLED it prints the authorization URL, headless chromium signs in on
// the gateway's page, the CLI's callback gets the code, and it prints the tools. A second
// run with --stored-auth-only reuses the stored tokens without a browser.
func TestOAuthInspectorCLI(t *testing.T) {
	n := requireNode(t)
	requireChromium(t)
	dir := t.TempDir()
	goURL := startGoSSEUpstream(t)
	g := startOAuthGateway(t, dir, upstreamConfig{Name: upGo, URL: goURL, Transport: "sse"})
	waitTools(t, g.base+"/mcp/"+upGo, map[string]string{"Authorization": "Bearer " + g.key}, goToolEcho, 30*time.Second)
	key := g.newKey(t, "inspector-user", upGo)
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	callback := fmt.Sprintf("http://127.0.0.1:%d/oauth/callback", freePort(t))
	env := n.env("HOME="+home, "MCP_AUTO_OPEN_ENABLED=true", "MCP_INSPECTOR_SECRET_STORE=file", "MCP_OAUTH_CALLBACK_URL="+callback)
	inspector := filepath.Join(n.modules, "@modelcontextprotocol", "inspector", "cli.js")
	if _, err := os.Stat(inspector); err != nil {
		inspector = findInspectorBin(t, n)
	}
	target := g.base + "/mcp/" + upGo
	args := []string{n.node, inspector, "--cli", target, "--transport", "http", "--method", "tools/list", "--format", "json"}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errLines []string
	authURL := ""
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		errLines = append(errLines, line)
		if m := regexp.MustCompile(`Please navigate to: (\S+)`).FindStringSubmatch(line); m != nil {
			authURL = m[1]
			break
		}
	}
	if authURL == "" {
		_ = cmd.Wait()
		t.Fatalf("inspector printed no authorization URL:\n%s\n%s", strings.Join(errLines, "\n"), stdout.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	bout, berr, err := runCmd(ctx, n.dir, n.env(), 60*time.Second, n.node, filepath.Join(n.dir, "oauth_browser.mjs"), authURL, key)
	if err != nil {
		t.Errorf("browser: %v\n%s%s", err, bout, berr)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("inspector: %v\nstdout: %s\nstderr: %s", err, stdout.String(), strings.Join(errLines, "\n"))
	}
	var res struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("inspector output: %v\n%s", err, stdout.String())
	}
	var names []string
	for _, tl := range res.Result.Tools {
		names = append(names, tl.Name)
	}
	if !contains(names, goToolEcho) {
		t.Errorf("inspector tools/list after login: %v, want %s\n%s", names, goToolEcho, stdout.String())
	}
	// The stored tokens work for the next run, with no browser.
	out, errOut, err := runCmd(context.Background(), dir, env, 60*time.Second,
		append(args, "--stored-auth-only")...)
	if err != nil || !strings.Contains(out, `"`+goToolEcho+`"`) {
		t.Errorf("second run with stored auth: %v\n%s\n%s", err, out, errOut)
	}
}

// findInspectorBin returns the inspector's CLI entry point from its package.json bin.
func findInspectorBin(tb testing.TB, n nodeEnv) string {
	tb.Helper()
	dir := filepath.Join(n.modules, "@modelcontextprotocol", "inspector")
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var pkg struct {
		Bin map[string]string `json:"bin"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"mcp-inspector", "inspector"} {
		if p, ok := pkg.Bin[name]; ok {
			return filepath.Join(dir, p)
		}
	}
	tb.Fatalf("no inspector bin in %v", pkg.Bin)
	return ""
}
