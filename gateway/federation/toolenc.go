package federation

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// Tool encodings for the fast tools/list (fastlist.go).
//
// A tool's wire form is json.Marshal(mcp.Tool): mcp.Tool.MarshalJSON (mcp-go
// v1.2.1) puts the members in a map and encodes that, so they come in key
// order, each value encoded by encoding/json (HTML-escaped), and the outer
// json.Marshal compacts the result, which changes nothing. In key order:
//
//	_meta, annotations, defer_loading, description, execution, icons,
//	inputSchema, name, outputSchema, title
//
// A view changes only _meta, description and name. So each upstream tool is
// encoded once, when its list arrives, into the members between them
// (toolParts, each value by json.Marshal of the same value the map holds),
// and every view's encodings are those parts with its own _meta, description
// and name spliced in. TestToolPartsMatchMarshal and FuzzToolParts hold this
// to json.Marshal(mcp.Tool) byte for byte.

// toolParts is one tool's encoding without _meta, description and name.
type toolParts struct {
	ok bool // false: json.Marshal fails for the tool; views of it use mcp-go's encoding
	// enc is `"annotations":…[,"defer_loading":true]`, then from head on
	// `[,"execution":…][,"icons":…],"inputSchema":…`, then from mid on
	// `[,"outputSchema":…][,"title":…]}`.
	enc       []byte
	head, mid int
	// input and output are the structured schemas encoded (nil when the
	// tool has a raw schema, or no output schema): a view's mcp.Tool carries
	// them as RawInputSchema and RawOutputSchema, so they are not encoded
	// again.
	input, output json.RawMessage
}

// newToolParts encodes t's members other than _meta, description and name.
func newToolParts(t mcp.Tool) toolParts {
	var p toolParts
	var err error
	// The schemas' MarshalJSON output is what json.Marshal writes for them:
	// encoding/json's own output, compact and HTML-escaped, which
	// json.Marshal's compaction leaves alone (FuzzToolParts checks it).
	if t.RawInputSchema == nil {
		if p.input, err = t.InputSchema.MarshalJSON(); err != nil {
			p.input = nil
		}
	}
	if t.RawOutputSchema == nil && t.OutputSchema.Type != "" {
		if p.output, err = t.OutputSchema.MarshalJSON(); err != nil {
			p.output = nil
		}
	}
	if t.RawInputSchema != nil && t.InputSchema.Type != "" || t.RawOutputSchema != nil && t.OutputSchema.Type != "" {
		return p // MarshalJSON refuses a tool with both forms of a schema
	}
	if t.RawInputSchema == nil && p.input == nil || t.RawOutputSchema == nil && t.OutputSchema.Type != "" && p.output == nil {
		return p
	}
	buf := make([]byte, 0, 64+len(p.input)+len(t.RawInputSchema)+len(p.output)+len(t.RawOutputSchema)+len(t.Title))
	ok := true
	member := func(key string, v any) {
		if !ok {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			ok = false
			return
		}
		buf = append(buf, key...)
		buf = append(buf, b...)
	}
	buf = append(buf, `"annotations":`...)
	buf = appendAnnotations(buf, t.Annotations)
	if t.DeferLoading {
		buf = append(buf, `,"defer_loading":true`...)
	}
	p.head = len(buf)
	if t.Execution != nil {
		member(`,"execution":`, t.Execution)
	}
	if t.Icons != nil {
		member(`,"icons":`, t.Icons)
	}
	if t.RawInputSchema != nil {
		member(`,"inputSchema":`, t.RawInputSchema)
	} else {
		buf = append(buf, `,"inputSchema":`...)
		buf = append(buf, p.input...)
	}
	p.mid = len(buf)
	if t.RawOutputSchema != nil {
		member(`,"outputSchema":`, t.RawOutputSchema)
	} else if p.output != nil {
		buf = append(buf, `,"outputSchema":`...)
		buf = append(buf, p.output...)
	}
	if t.Title != "" {
		buf = append(buf, `,"title":`...)
		buf = appendJSONString(buf, t.Title)
	}
	buf = append(buf, '}')
	p.enc, p.ok = buf, ok
	return p
}

// setSchemas gives t (a view of the tool p encodes) its schemas pre-encoded.
func (p *toolParts) setSchemas(t *mcp.Tool) {
	if p.input != nil {
		t.RawInputSchema, t.InputSchema = p.input, mcp.ToolInputSchema{}
	}
	if p.output != nil {
		t.RawOutputSchema, t.OutputSchema = p.output, mcp.ToolOutputSchema{}
	}
}

// appendTool appends the encoding of the tool p encodes with the given _meta
// encoding (nil: none), description and name. p.ok must be true.
func (p *toolParts) appendTool(dst, meta []byte, description, name string) []byte {
	dst = append(dst, '{')
	if meta != nil {
		dst = append(dst, `"_meta":`...)
		dst = append(dst, meta...)
		dst = append(dst, ',')
	}
	dst = append(dst, p.enc[:p.head]...)
	if description != "" {
		dst = append(dst, `,"description":`...)
		dst = appendJSONString(dst, description)
	}
	dst = append(dst, p.enc[p.head:p.mid]...)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, name)
	return append(dst, p.enc[p.mid:]...)
}

// appendMeta appends the encoding of meta, which is withMeta(upstream,
// server, name). ok is false if it cannot be encoded.
func appendMeta(dst []byte, upstream, meta *mcp.Meta, server, name string) ([]byte, bool) {
	if upstream != nil {
		b, err := json.Marshal(meta)
		if err != nil {
			return dst, false
		}
		return append(dst, b...), true
	}
	// mcp.Meta.MarshalJSON encodes a map: keys in order.
	dst = append(dst, `{"`+MetaName+`":`...)
	dst = appendJSONString(dst, name)
	dst = append(dst, `,"`+MetaServer+`":`...)
	dst = appendJSONString(dst, server)
	return append(dst, '}'), true
}

// appendJSONString appends s encoded as json.Marshal encodes a string.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendAnnotations appends a as json.Marshal encodes it: the fields in
// declaration order, empty ones omitted.
func appendAnnotations(dst []byte, a mcp.ToolAnnotation) []byte {
	dst = append(dst, '{')
	sep := false
	if a.Title != "" {
		dst = append(dst, `"title":`...)
		dst = appendJSONString(dst, a.Title)
		sep = true
	}
	for _, h := range [...]struct {
		key string
		v   *bool
	}{{"readOnlyHint", a.ReadOnlyHint}, {"destructiveHint", a.DestructiveHint}, {"idempotentHint", a.IdempotentHint}, {"openWorldHint", a.OpenWorldHint}} {
		if h.v == nil {
			continue
		}
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, h.key...)
		dst = append(dst, `":`...)
		dst = strconv.AppendBool(dst, *h.v)
		sep = true
	}
	return append(dst, '}')
}
