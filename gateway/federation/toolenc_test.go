package federation

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// checkToolEncodings fails unless every encoding toolenc.go produces for t is
// json.Marshal's: the tool itself, and the plain and prefixed views of it on a
// server with the given display name and description overrides.
func checkToolEncodings(t *testing.T, tool mcp.Tool, server, display string, desc *string) {
	t.Helper()
	want, wantErr := json.Marshal(tool)
	p := newToolParts(tool)
	if wantErr != nil {
		if p.ok {
			t.Errorf("json.Marshal fails (%v) but the parts encode %q", wantErr, p.enc)
		}
		return
	}
	if !p.ok {
		t.Fatalf("json.Marshal encodes %s but the parts cannot", want)
	}
	var meta []byte
	if tool.Meta != nil {
		var err error
		if meta, err = json.Marshal(tool.Meta); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.appendTool(nil, meta, tool.Description, tool.Name); !bytes.Equal(got, want) {
		t.Errorf("tool encoding differs\ngot:  %s\nwant: %s", got, want)
	}

	cfg := Server{Name: server}
	if display != "" {
		cfg.ToolNameToDisplayName = map[string]string{tool.Name: display}
	}
	if desc != nil {
		cfg.ToolNameToDescription = map[string]string{tool.Name: *desc}
	}
	v := newServerState(cfg, &serverLists{}).tools(newToolList([]mcp.Tool{tool}))
	if len(v.plain) != 1 {
		t.Fatalf("view has %d tools, want 1", len(v.plain))
	}
	prefixed := v.plain[0]
	prefixed.Name = v.prefixed[0]
	for k, shown := range []mcp.Tool{v.plain[0], prefixed} {
		want, err := json.Marshal(shown)
		if err != nil {
			if v.enc[k][0] != nil {
				t.Errorf("view %d: json.Marshal fails (%v) but the view has %s", k, err, v.enc[k][0])
			}
			continue
		}
		if got := v.enc[k][0]; !bytes.Equal(got, want) {
			t.Errorf("view %d encoding differs\ngot:  %s\nwant: %s", k, got, want)
		}
	}
}

func TestToolPartsMatchMarshal(t *testing.T) {
	yes, no := true, false
	empty := ""
	html := "a <b> & c"
	for _, c := range []struct {
		name    string
		tool    mcp.Tool
		display string
		desc    *string
	}{
		{name: "built", tool: mcp.NewTool("echo", mcp.WithDescription("Echoes"), mcp.WithString("message", mcp.Required()))},
		{name: "html and unicode", tool: mcp.NewTool("e<c>h&o", mcp.WithDescription("Echoes <b>&</b> back — ünïcödé \u2028 \u2029 \x00 \xff"),
			mcp.WithString("m<>", mcp.Description("<&>"), mcp.Enum("<a>", "b&c")), mcp.WithTitleAnnotation("T<i>tle")), display: "d<>&", desc: &html},
		{name: "no annotations", tool: mcp.Tool{Name: "bare"}},
		{name: "empty description override", tool: mcp.NewTool("x", mcp.WithDescription("gone")), desc: &empty},
		{name: "raw schemas", tool: mcp.Tool{Name: "raw", Title: "Raw <tool>",
			RawInputSchema:  json.RawMessage(" {\"type\": \"object\", \"properties\": {\"x\": {\"enum\": [\"<a>\", \"b&c\"]}}}\n"),
			RawOutputSchema: json.RawMessage(`{"type":"object","properties":{"y":{"type":"number"}}}`)}},
		{name: "output schema", tool: mcp.NewTool("add", mcp.WithNumber("a"), mcp.WithOutputSchema[struct {
			Sum float64 `json:"sum"`
		}]())},
		{name: "annotations", tool: mcp.Tool{Name: "a", Annotations: mcp.ToolAnnotation{Title: "t", ReadOnlyHint: &yes, IdempotentHint: &no}}},
		{name: "meta, icons, execution, defer", tool: mcp.Tool{Name: "m", DeferLoading: true,
			Meta:      &mcp.Meta{ProgressToken: "p", AdditionalFields: map[string]any{"vendor/x": map[string]any{"z": 1, "a": []any{"<", 2.5}}}},
			Icons:     []mcp.Icon{{Src: "https://example.com/i.png?a=1&b=<2>", MIMEType: "image/png", Sizes: []string{"48x48"}}},
			Execution: &mcp.ToolExecution{TaskSupport: "optional"}}},
		{name: "empty icons", tool: mcp.Tool{Name: "i", Icons: []mcp.Icon{}}},
		{name: "ordered properties", tool: mcp.Tool{Name: "o", InputSchema: mcp.ToolInputSchema{Type: "object",
			Properties:    map[string]any{"b": map[string]any{"type": "string"}, "a": map[string]any{"type": "number"}, "c": true},
			PropertyOrder: []string{"b", "zz", "a"}, Required: []string{"a"}, AdditionalProperties: false,
			Defs: map[string]any{"d": map[string]any{"type": "string"}}}}},
		{name: "both input schemas", tool: mcp.Tool{Name: "both", InputSchema: mcp.ToolInputSchema{Type: "object"}, RawInputSchema: json.RawMessage(`{}`)}},
		{name: "invalid raw schema", tool: mcp.Tool{Name: "bad", RawInputSchema: json.RawMessage(`{"type":`)}},
		{name: "empty raw schema", tool: mcp.Tool{Name: "empty", RawInputSchema: json.RawMessage{}}},
		{name: "long name", tool: mcp.NewTool("a_very_long_tool_name_that_will_not_fit_in_sixty_four_characters_at_all"), display: "ünï.códe name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkToolEncodings(t, c.tool, "srv", c.display, c.desc)
			checkToolEncodings(t, c.tool, "odd server/ñame", c.display, c.desc)
		})
	}
}

// FuzzToolParts compares the encodings with json.Marshal on tools built from
// fuzzed strings: names, descriptions, titles, a raw or structured schema,
// _meta and icons.
func FuzzToolParts(f *testing.F) {
	f.Add("echo", "Echoes <b>&</b>", "Title", `{"type":"object"}`, "vendor/x", "v", "srv", "", "", byte(0))
	f.Add("e\u2028", "\xff\x00", "", `{"type": "object", "properties": {"x": {"enum": ["<a>"]}}}`, "", "", "s-1", "disp", "new", byte(0xff))
	f.Fuzz(func(t *testing.T, name, desc, title, schema, metaKey, metaVal, server, display, newDesc string, flags byte) {
		tool := mcp.Tool{Name: name, Description: desc, Title: title}
		if flags&1 != 0 {
			tool.RawInputSchema = json.RawMessage(schema)
		} else {
			tool.InputSchema = mcp.ToolInputSchema{Type: "object", Properties: map[string]any{metaKey: map[string]any{"description": metaVal}}}
		}
		if flags&2 != 0 {
			tool.RawOutputSchema = json.RawMessage(schema)
		} else if flags&4 != 0 {
			tool.OutputSchema = mcp.ToolOutputSchema{Type: "object", Required: []string{metaVal}}
		}
		if flags&8 != 0 {
			tool.Meta = &mcp.Meta{AdditionalFields: map[string]any{metaKey: metaVal}}
		}
		if flags&16 != 0 {
			tool.Icons = []mcp.Icon{{Src: metaVal}}
		}
		if flags&32 != 0 {
			b := flags&64 != 0
			tool.Annotations = mcp.ToolAnnotation{Title: title, OpenWorldHint: &b}
		}
		tool.DeferLoading = flags&128 != 0
		var d *string
		if flags&64 != 0 {
			d = &newDesc
		}
		checkToolEncodings(t, tool, server, display, d)
	})
}
