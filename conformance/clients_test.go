package conformance

// This file drives the real MCP clients the interop matrix and the end-to-end test use: the
// TypeScript SDK (clients/ts-client.mjs), the MCP Inspector CLI, Claude Code and the mcp-go
// client in both protocol generations.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// Operations a client is asked to perform, in matrix column order.
const (
	opConnect  = "connect"
	opList     = "tools/list"
	opCall     = "tools/call"
	opRead     = "resources/read"
	opPrompt   = "prompts/get"
	opProgress = "progress"

	// opProtocol is not an operation: its Detail records the protocol a client spoke.
	opProtocol = "protocol"
)

var allOps = []string{opConnect, opList, opCall, opRead, opPrompt, opProgress}

// target is one MCP endpoint and what to ask of it.
type target struct {
	Label     string // upstream label for the matrix, e.g. "everything (http upstream)"
	URL       string
	Transport string // "http" or "sse"
	Headers   map[string]string

	Tool         string
	ToolArgs     map[string]any
	WantText     string // substring the tool call's text must contain
	Resource     string // URI to read; "first" reads the first listed resource
	Prompt       string
	PromptArgs   map[string]string
	ProgressTool string
	ProgressArgs map[string]any
	MinProgress  int
}

// outcome is one cell of the matrix.
type outcome struct {
	OK     bool
	NA     bool   // the client cannot do this operation
	Detail string // error or short evidence
}

func (o outcome) cell() string {
	switch {
	case o.NA:
		return "n/a"
	case o.OK:
		return "pass"
	default:
		return "FAIL"
	}
}

type outcomes map[string]outcome

func (oc outcomes) failed() []string {
	var bad []string
	for _, op := range allOps {
		if o, ok := oc[op]; ok && !o.OK && !o.NA {
			bad = append(bad, fmt.Sprintf("%s: %s", op, o.Detail))
		}
	}
	return bad
}

func headerFlags(flag string, h map[string]string) []string {
	var out []string
	for k, v := range h {
		out = append(out, flag, k+": "+v)
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// runTSClient runs clients/ts-client.mjs (TypeScript SDK 1.32) against t.
func runTSClient(ctx context.Context, n nodeEnv, t target) outcomes {
	args := []string{n.node, filepath.Join(n.dir, "clients", "ts-client.mjs"),
		"--url", t.URL, "--transport", t.Transport, "--timeout", "15000"}
	args = append(args, headerFlags("--header", t.Headers)...)
	if t.Tool != "" {
		args = append(args, "--tool", t.Tool, "--tool-args", mustJSON(t.ToolArgs))
	}
	if t.Resource != "" {
		args = append(args, "--resource", t.Resource)
	}
	if t.Prompt != "" {
		args = append(args, "--prompt", t.Prompt, "--prompt-args", mustJSON(t.PromptArgs))
	}
	if t.ProgressTool != "" {
		args = append(args, "--progress-tool", t.ProgressTool, "--progress-args", mustJSON(t.ProgressArgs),
			"--min-progress", fmt.Sprint(t.MinProgress))
	}
	stdout, stderr, err := runCmd(ctx, n.dir, n.env(), 100*time.Second, args...)
	res := outcomes{}
	var parsed struct {
		Ops map[string]struct {
			OK       bool   `json:"ok"`
			Error    string `json:"error"`
			Text     string `json:"text"`
			Progress []any  `json:"progress"`
			Protocol string `json:"protocol"`
			Count    int    `json:"count"`
		} `json:"ops"`
	}
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if jerr := json.Unmarshal([]byte(line), &parsed); jerr != nil {
		msg := fmt.Sprintf("no result (%v): %s %s", err, strings.TrimSpace(stdout), lastLine(stderr))
		res[opConnect] = outcome{Detail: msg}
		return res
	}
	get := func(op, key string) {
		r, ok := parsed.Ops[key]
		if !ok {
			if _, asked := res[op]; !asked {
				res[op] = outcome{Detail: "not run"}
			}
			return
		}
		o := outcome{OK: r.OK, Detail: r.Error}
		if r.OK {
			switch op {
			case opConnect:
				o.Detail = "protocol " + r.Protocol
			case opList:
				o.Detail = fmt.Sprintf("%d tools", r.Count)
			case opProgress:
				o.Detail = fmt.Sprintf("progress %v", r.Progress)
			}
		}
		if op == opCall && r.OK && t.WantText != "" && !strings.Contains(r.Text, t.WantText) {
			o = outcome{Detail: fmt.Sprintf("text %q lacks %q", r.Text, t.WantText)}
		}
		res[op] = o
	}
	get(opConnect, "initialize")
	get(opList, "tools/list")
	if t.Tool != "" {
		get(opCall, "tools/call")
	}
	if t.Resource != "" {
		get(opRead, "resources/read")
		if r := parsed.Ops["resources/list"]; !r.OK && res[opRead].OK {
			res[opRead] = outcome{Detail: "resources/list: " + r.Error}
		}
	}
	if t.Prompt != "" {
		get(opPrompt, "prompts/get")
	}
	if t.ProgressTool != "" {
		get(opProgress, "progress")
	}
	return res
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// inspectorEra is the Inspector CLI's --protocol-era value.
type inspectorEra string

// runInspector drives MCP Inspector 2.12's CLI (one process per operation) against t.
func runInspector(ctx context.Context, n nodeEnv, home string, era inspectorEra, t target) outcomes {
	cli := filepath.Join(n.modules, "@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js")
	env := n.env("HOME="+home, "MCP_INSPECTOR_SECRET_STORE=memory")
	run := func(extra ...string) (map[string]any, error) {
		args := []string{n.node, cli, "--cli", t.URL, "--transport", t.Transport, "--protocol-era", string(era),
			"--format", "json", "-q", "--connect-timeout", "15000"}
		args = append(args, headerFlags("--header", t.Headers)...)
		args = append(args, extra...)
		stdout, stderr, err := runCmd(ctx, n.dir, env, 60*time.Second, args...)
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, firstNonEmpty(lastLine(stderr), lastLine(stdout)))
		}
		var v map[string]any
		if jerr := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &v); jerr != nil {
			return nil, fmt.Errorf("bad JSON output: %v: %.200s", jerr, stdout)
		}
		return v, nil
	}
	res := outcomes{}
	v, err := run("--method", "tools/list")
	if err != nil {
		res[opConnect] = outcome{Detail: err.Error()}
		return res
	}
	res[opConnect] = outcome{OK: true}
	tools, _ := dig(v, "result", "tools").([]any)
	if tools == nil {
		tools, _ = dig(v, "tools").([]any)
	}
	res[opList] = outcome{OK: len(tools) > 0, Detail: fmt.Sprintf("%d tools", len(tools))}
	if t.Tool != "" {
		args := []string{"--method", "tools/call", "--tool-name", t.Tool, "--tool-args-json", mustJSON(t.ToolArgs)}
		v, err := run(args...)
		switch {
		case err != nil:
			res[opCall] = outcome{Detail: err.Error()}
		case t.WantText != "" && !strings.Contains(mustJSON(v), t.WantText):
			res[opCall] = outcome{Detail: fmt.Sprintf("result lacks %q: %.200s", t.WantText, mustJSON(v))}
		default:
			res[opCall] = outcome{OK: true}
		}
	}
	if t.Resource != "" {
		uri := t.Resource
		if uri == "first" {
			v, err := run("--method", "resources/list")
			if err != nil {
				res[opRead] = outcome{Detail: "resources/list: " + err.Error()}
			} else if rs, _ := firstOf(dig(v, "result", "resources"), dig(v, "resources")).([]any); len(rs) > 0 {
				uri, _ = dig(rs[0], "uri").(string)
			} else {
				res[opRead] = outcome{Detail: "resources/list returned none"}
			}
		}
		if _, done := res[opRead]; !done {
			if _, err := run("--method", "resources/read", "--uri", uri); err != nil {
				res[opRead] = outcome{Detail: err.Error()}
			} else {
				res[opRead] = outcome{OK: true}
			}
		}
	}
	if t.Prompt != "" {
		args := []string{"--method", "prompts/get", "--prompt-name", t.Prompt}
		if len(t.PromptArgs) > 0 {
			args = append(args, "--prompt-args")
			for k, v := range t.PromptArgs {
				args = append(args, k+"="+v)
			}
		}
		if _, err := run(args...); err != nil {
			res[opPrompt] = outcome{Detail: err.Error()}
		} else {
			res[opPrompt] = outcome{OK: true}
		}
	}
	res[opProgress] = outcome{NA: true, Detail: "the CLI does not report progress notifications"}
	return res
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstOf(v ...any) any {
	for _, x := range v {
		if x != nil {
			return x
		}
	}
	return nil
}

// dig walks nested JSON objects.
func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// claudeStatus matches one `claude mcp list` line: "name: url (HTTP) - ✔ Connected".
var claudeStatus = regexp.MustCompile(`(?m)^([A-Za-z0-9_-]+): .* - (.+)$`)

// runClaude registers t with Claude Code (`claude mcp add`) in a throwaway config and reports
// whether `claude mcp list` shows it connected. Claude Code cannot call tools headless without
// a model login, so only the connection (which lists tools) is checked.
func runClaude(ctx context.Context, n nodeEnv, home, name string, t target) outcomes {
	bin := filepath.Join(n.modules, "@anthropic-ai", "claude-code-linux-x64", "claude")
	proj := filepath.Join(home, "project")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		return outcomes{opConnect: {Detail: err.Error()}}
	}
	env := n.env("HOME="+home, "CLAUDE_CONFIG_DIR="+filepath.Join(home, ".claude"),
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1")
	args := []string{bin, "mcp", "add", "--transport", t.Transport, name, t.URL}
	args = append(args, headerFlags("--header", t.Headers)...)
	if _, stderr, err := runCmd(ctx, proj, env, 60*time.Second, args...); err != nil {
		return outcomes{opConnect: {Detail: fmt.Sprintf("mcp add: %v: %s", err, lastLine(stderr))}}
	}
	stdout, stderr, err := runCmd(ctx, proj, env, 90*time.Second, bin, "mcp", "list")
	if err != nil {
		return outcomes{opConnect: {Detail: fmt.Sprintf("mcp list: %v: %s", err, lastLine(stderr))}}
	}
	res := outcomes{}
	for _, m := range claudeStatus.FindAllStringSubmatch(stdout, -1) {
		if m[1] != name {
			continue
		}
		status := strings.TrimSpace(m[2])
		ok := strings.Contains(status, "Connected")
		res[opConnect] = outcome{OK: ok, Detail: status}
		// A connected health check has initialized (or discovered) and listed tools.
		res[opList] = outcome{OK: ok, Detail: "via mcp list"}
	}
	if _, ok := res[opConnect]; !ok {
		res[opConnect] = outcome{Detail: fmt.Sprintf("%s not in `claude mcp list` output: %.300s", name, stdout)}
	}
	for _, op := range []string{opCall, opRead, opPrompt, opProgress} {
		res[op] = outcome{NA: true, Detail: "needs a model session"}
	}
	return res
}

// mcpGoEra selects the mcp-go client's protocol generation.
type mcpGoEra string

const (
	eraLegacy mcpGoEra = "legacy" // 2025-11-25, initialize + Mcp-Session-Id
	eraModern mcpGoEra = "modern" // 2026-07-28, server/discover, stateless
)

// runMCPGo drives the mcp-go v1.2.1 client in-process against t.
func runMCPGo(ctx context.Context, era mcpGoEra, t target) outcomes {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res := outcomes{}
	var tr transport.Interface
	var err error
	if t.Transport == "sse" {
		tr, err = transport.NewSSE(t.URL, transport.WithHeaders(t.Headers))
	} else {
		tr, err = transport.NewStreamableHTTP(t.URL, transport.WithHTTPHeaders(t.Headers))
	}
	if err != nil {
		res[opConnect] = outcome{Detail: err.Error()}
		return res
	}
	var opts []client.ClientOption
	if era == eraLegacy {
		opts = append(opts, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	} else {
		opts = append(opts, client.WithProtocolVersion(mcp.ProtocolVersion20260728))
	}
	c := client.NewClient(tr, opts...)
	defer c.Close()

	var mu sync.Mutex
	var progress []float64
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/progress" {
			return
		}
		if p, ok := n.Params.AdditionalFields["progress"].(float64); ok {
			mu.Lock()
			progress = append(progress, p)
			mu.Unlock()
		}
	})
	if err := c.Start(ctx); err != nil {
		res[opConnect] = outcome{Detail: err.Error()}
		return res
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "toolgate-interop-mcpgo", Version: "1.0.0"}
	if era == eraLegacy {
		init.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	}
	if _, err := c.Initialize(ctx, init); err != nil {
		res[opConnect] = outcome{Detail: err.Error()}
		return res
	}
	got := c.ProtocolVersion()
	wantModern := era == eraModern
	if mcp.IsModernProtocol(got) != wantModern {
		res[opConnect] = outcome{Detail: fmt.Sprintf("negotiated %s, want the %s generation", got, era)}
		return res
	}
	res[opConnect] = outcome{OK: true, Detail: "protocol " + got}

	if lt, err := c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
		res[opList] = outcome{Detail: err.Error()}
	} else {
		res[opList] = outcome{OK: len(lt.Tools) > 0, Detail: fmt.Sprintf("%d tools", len(lt.Tools))}
	}
	if t.Tool != "" {
		req := mcp.CallToolRequest{}
		req.Params.Name = t.Tool
		req.Params.Arguments = t.ToolArgs
		r, err := c.CallTool(ctx, req)
		res[opCall] = toolOutcome(r, err, t.WantText)
	}
	if t.Resource != "" {
		uri := t.Resource
		if uri == "first" {
			lr, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			switch {
			case err != nil:
				res[opRead] = outcome{Detail: "resources/list: " + err.Error()}
			case len(lr.Resources) == 0:
				res[opRead] = outcome{Detail: "resources/list returned none"}
			default:
				uri = lr.Resources[0].URI
			}
		}
		if _, done := res[opRead]; !done {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = uri
			rr, err := c.ReadResource(ctx, req)
			switch {
			case err != nil:
				res[opRead] = outcome{Detail: err.Error()}
			case len(rr.Contents) == 0:
				res[opRead] = outcome{Detail: "no contents"}
			default:
				res[opRead] = outcome{OK: true}
			}
		}
	}
	if t.Prompt != "" {
		req := mcp.GetPromptRequest{}
		req.Params.Name = t.Prompt
		req.Params.Arguments = t.PromptArgs
		pr, err := c.GetPrompt(ctx, req)
		switch {
		case err != nil:
			res[opPrompt] = outcome{Detail: err.Error()}
		case len(pr.Messages) == 0:
			res[opPrompt] = outcome{Detail: "no messages"}
		default:
			res[opPrompt] = outcome{OK: true}
		}
	}
	if t.ProgressTool != "" {
		req := mcp.CallToolRequest{}
		req.Params.Name = t.ProgressTool
		req.Params.Arguments = t.ProgressArgs
		req.Params.Meta = &mcp.Meta{ProgressToken: "interop-progress"}
		r, err := c.CallTool(ctx, req)
		o := toolOutcome(r, err, "")
		// Notifications are handled on the reader goroutine; give a straggler a moment.
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		seen := append([]float64(nil), progress...)
		mu.Unlock()
		if o.OK && len(seen) < t.MinProgress {
			o = outcome{Detail: fmt.Sprintf("got %d progress notifications %v, want at least %d", len(seen), seen, t.MinProgress)}
		} else if o.OK {
			o.Detail = fmt.Sprintf("progress %v", seen)
		}
		res[opProgress] = o
	}
	return res
}

func toolOutcome(r *mcp.CallToolResult, err error, want string) outcome {
	if err != nil {
		return outcome{Detail: err.Error()}
	}
	if r.IsError {
		return outcome{Detail: fmt.Sprintf("isError: %s", mustJSON(r.Content))}
	}
	if want != "" && !strings.Contains(mustJSON(r.Content), want) {
		return outcome{Detail: fmt.Sprintf("result lacks %q: %.200s", want, mustJSON(r.Content))}
	}
	return outcome{OK: true}
}
