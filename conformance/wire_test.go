package conformance

// Wire-level golden tests: each testdata/wire/*.txtar archive is a sequence of raw HTTP
// exchanges with a gateway fronting a Go mcp-go upstream. A "request" section is sent as
// written (after placeholder substitution); the "response" section after it holds what came
// back, normalized, and is regenerated with `go test ./conformance -run TestWire -update`.
//
// Placeholders: {{key}} is the master key, {{session}} the last Mcp-Session-Id the gateway
// returned, {{base}} the gateway's base URL (in responses).

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/server"
)

var update = flag.Bool("update", false, "rewrite the response sections of testdata/wire/*.txtar")

// archive is a parsed txtar file.
type archive struct {
	comment string
	files   []archiveFile
}

type archiveFile struct {
	name string
	data string
}

// parseArchive parses the txtar format: a comment, then "-- name --" lines each starting a file.
func parseArchive(data string) archive {
	var a archive
	cur := -1
	var b strings.Builder
	flush := func() {
		if cur < 0 {
			a.comment = b.String()
		} else {
			a.files[cur].data = b.String()
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(data, "\n") {
		trimmed := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") && len(trimmed) > 6 {
			flush()
			a.files = append(a.files, archiveFile{name: strings.TrimSpace(trimmed[3 : len(trimmed)-3])})
			cur = len(a.files) - 1
			continue
		}
		b.WriteString(line)
	}
	flush()
	return a
}

func (a archive) format() string {
	var b strings.Builder
	b.WriteString(a.comment)
	for _, f := range a.files {
		fmt.Fprintf(&b, "-- %s --\n", f.name)
		b.WriteString(f.data)
		if f.data != "" && !strings.HasSuffix(f.data, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// wireVars are the placeholder values of one archive run.
type wireVars struct {
	base, key, session string
}

func (v *wireVars) expand(s string) string {
	return strings.NewReplacer("{{key}}", v.key, "{{session}}", v.session, "{{base}}", v.base).Replace(s)
}

func (v *wireVars) normalize(s string) string {
	pairs := []string{v.base, "{{base}}", v.key, "{{key}}"}
	if v.session != "" {
		pairs = append(pairs, v.session, "{{session}}")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// parseRequest reads "METHOD PATH", header lines, a blank line and the body.
func parseRequest(base, text string) (*http.Request, error) {
	head, body, _ := strings.Cut(text, "\n\n")
	lines := strings.Split(strings.TrimSpace(head), "\n")
	method, path, ok := strings.Cut(strings.TrimSpace(lines[0]), " ")
	if !ok {
		return nil, fmt.Errorf("request line %q: want METHOD PATH", lines[0])
	}
	body = strings.TrimRight(body, "\n")
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, l := range lines[1:] {
		k, val, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q", l)
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if strings.EqualFold(k, "Host") {
			req.Host = val
			continue
		}
		req.Header.Add(k, val)
	}
	return req, nil
}

// shownHeaders are the response headers a golden file records.
var shownHeaders = []string{"Content-Type", "Mcp-Session-Id", "WWW-Authenticate", "Allow"}

// renderResponse renders status, the shown headers and the body with JSON pretty-printed
// (each SSE data payload separately).
func renderResponse(resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d\n", resp.StatusCode)
	for _, h := range shownHeaders {
		v := resp.Header.Get(h)
		if v == "" {
			continue
		}
		if h == "Content-Type" {
			if mt, _, err := mime.ParseMediaType(v); err == nil {
				v = mt
			}
		}
		if h == "Mcp-Session-Id" {
			v = "{{session}}"
		}
		fmt.Fprintf(&b, "%s: %s\n", h, v)
	}
	b.WriteString("\n")
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case len(bytes.TrimSpace(body)) == 0:
	case mt == "text/event-stream":
		for _, line := range strings.Split(string(body), "\n") {
			if data, ok := strings.CutPrefix(line, "data:"); ok && strings.TrimSpace(data) != "" {
				b.WriteString(prettyJSON([]byte(strings.TrimSpace(data))))
				b.WriteString("\n")
			}
		}
	default:
		b.WriteString(prettyJSON(body))
		b.WriteString("\n")
	}
	return b.String()
}

// prettyJSON re-encodes JSON with sorted keys and tabs; anything else is returned trimmed.
func prettyJSON(data []byte) string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return strings.TrimSpace(string(data))
	}
	out, _ := json.MarshalIndent(v, "", "\t")
	return string(out)
}

// TestWire replays testdata/wire/*.txtar against an in-process gateway whose config has two
// servers over one mcp-go upstream (streamable HTTP): "wire" (keys required) and "open"
// (allow_keyless).
func TestWire(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "wire", "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/wire/*.txtar (%v)", err)
	}
	up := httptest.NewServer(server.NewStreamableHTTPServer(newGoMCPServer()))
	t.Cleanup(up.Close)
	if os.Getenv("TOOLGATE_BIN") != "" {
		t.Setenv("TOOLGATE_BIN", "") // always in-process: the race detector watches it
	}
	g := startGateway(t, t.TempDir(),
		upstreamConfig{Name: "wire", URL: up.URL, Transport: "http"},
		upstreamConfig{Name: "open", URL: up.URL, Transport: "http", Keyless: true})
	waitTools(t, g.base+"/mcp/wire", map[string]string{"Authorization": "Bearer " + g.key}, goToolEcho, 30*time.Second)

	client := &http.Client{Timeout: 20 * time.Second}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			a := parseArchive(string(raw))
			vars := &wireVars{base: g.base, key: g.key}
			var out archive
			out.comment = a.comment
			step := 0
			for i := 0; i < len(a.files); i++ {
				f := a.files[i]
				if f.name != "request" {
					continue
				}
				step++
				out.files = append(out.files, f)
				req, err := parseRequest(g.base, vars.expand(f.data))
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
					vars.session = sid
				}
				got := vars.normalize(renderResponse(resp, body))
				out.files = append(out.files, archiveFile{name: "response", data: got})
				want := ""
				if i+1 < len(a.files) && a.files[i+1].name == "response" {
					want = a.files[i+1].data
				}
				if !*update {
					if diff := cmp.Diff(strings.TrimSpace(want), strings.TrimSpace(got)); diff != "" {
						t.Errorf("step %d (%s): response mismatch (-want +got):\n%s", step, firstLine(f.data), diff)
					}
				}
			}
			if *update {
				if err := os.WriteFile(file, []byte(out.format()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Run("body_over_limit", func(t *testing.T) {
		// 4 MiB is the default limit; the body is valid JSON-RPC padded past it.
		pad := strings.Repeat("x", 5<<20)
		body := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"pad":"` + pad + `"}}}`
		req, _ := http.NewRequest(http.MethodPost, g.base+"/mcp/wire", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("got %d %s, want 413", resp.StatusCode, b)
		}
	})
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
