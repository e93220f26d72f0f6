package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"
)

// reqBody is a JSON request body's top-level fields, in the order they were sent. Values
// stay raw and are decoded only when asked for: a completion body is read once to find its
// fields, and the fields a provider is sent are written back byte for byte, with no decode
// into maps and no re-encode of values.
//
// A multipart/form-data body (image edits) is held the same way: each part is a field,
// a text part's value is also kept as a JSON string (for the same reads and checks as a
// JSON body), and every part is written back as it came, headers and bytes, unless set
// replaced it.
type reqBody struct {
	fields []bodyField
	form   bool // read from, and written as, multipart/form-data
	// header holds the caller's headers a native passthrough sends on (anthropic-version,
	// anthropic-beta for /v1/messages); nil otherwise.
	header http.Header
}

// bodyField is one top-level field. name is the unescaped name; key is the name as sent,
// quotes included, and val the value as sent. Both alias the request's bytes, which are
// never modified. In a form, part is the part as sent, and val is nil for a file.
type bodyField struct {
	name []byte
	key  []byte
	val  json.RawMessage
	part *formPart
}

// formPart is a part of a multipart body: its headers (Content-Disposition with the field
// and file names, Content-Type) and contents.
type formPart struct {
	header textproto.MIMEHeader
	data   []byte
	file   bool
}

// parseForm reads a multipart/form-data body with the given boundary.
func parseForm(b []byte, boundary string) (*reqBody, error) {
	body := &reqBody{form: true}
	mr := multipart.NewReader(bytes.NewReader(b), boundary)
	for {
		p, err := mr.NextRawPart() // as sent: no Content-Transfer-Encoding decoding
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read multipart body: %w", err)
		}
		name := p.FormName()
		if name == "" {
			return nil, errors.New("read multipart body: a part has no form field name")
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("read multipart body: %w", err)
		}
		for _, vs := range p.Header {
			for i, v := range vs {
				// A folded header line can leave trailing space, which a header value never
				// keeps once written and read again: drop it now, so the part goes on as read.
				vs[i] = strings.TrimSpace(v)
			}
		}
		key, _ := json.Marshal(name)
		f := bodyField{name: []byte(name), key: key, part: &formPart{header: p.Header, data: data, file: p.FileName() != ""}}
		if !f.part.file {
			f.val, _ = json.Marshal(string(data))
		}
		body.fields = append(body.fields, f)
	}
}

var errNotObject = errors.New("request body must be a JSON object")

// parseBody splits a JSON object into its top-level fields. b must stay unmodified while
// the result is used. A body that is not valid JSON, or not an object, is errNotObject.
func parseBody(b []byte) (*reqBody, error) {
	body := &reqBody{fields: make([]bodyField, 0, 8)}
	err := eachField(b, func(f bodyField) { body.fields = append(body.fields, f) })
	if err != nil {
		return nil, err
	}
	return body, nil
}

// eachField calls fn with each top-level field of the JSON object b, in order. A b that is
// not valid JSON, or not an object, is errNotObject, and fn is not called.
func eachField(b []byte, fn func(bodyField)) error {
	if !json.Valid(b) {
		return errNotObject
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return errNotObject
	}
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return nil
	}
	for {
		// b is valid JSON, so a string key, a colon and a value follow, then ',' or '}'.
		ke := stringEnd(b, i)
		key := b[i:ke]
		name := key[1 : len(key)-1]
		if bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name) { // as encoding/json reads it
			var s string
			if err := json.Unmarshal(key, &s); err != nil {
				return errNotObject
			}
			name = []byte(s)
		}
		i = skipSpace(b, skipSpace(b, ke)+1) // past the colon
		ve := valueEnd(b, i)
		fn(bodyField{name: name, key: key, val: b[i:ve]})
		i = skipSpace(b, ve)
		if b[i] == '}' {
			return nil
		}
		i = skipSpace(b, i+1) // past the comma
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the valid JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}

// get returns the raw value of the field named name, or nil. Like encoding/json, the last
// of several fields with one name wins.
func (b *reqBody) get(name string) json.RawMessage {
	for i := len(b.fields) - 1; i >= 0; i-- {
		if string(b.fields[i].name) == name {
			return b.fields[i].val
		}
	}
	return nil
}

// text decodes the field named name as a string, as encoding/json does (escapes resolved,
// invalid UTF-8 replaced); ok is false when it is absent or not a string.
func (b *reqBody) text(name string) (string, bool) {
	v := b.get(name)
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if raw := v[1 : len(v)-1]; bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw), true
	}
	return decodeText(v)
}

// decodeText decodes a JSON string with escapes. It is apart from text so that text's
// common path does not allocate the variable that json.Unmarshal's pointer makes escape.
func decodeText(v json.RawMessage) (string, bool) {
	var s string
	return s, json.Unmarshal(v, &s) == nil
}

// integer decodes the field named name as an integer (in a form, the text of one); ok is
// false when it is absent, null or not an integer that fits in an int64.
func (b *reqBody) integer(name string) (n int64, ok bool) {
	if b.form {
		t, ok := b.text(name)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		return n, err == nil
	}
	return integer(b.get(name))
}

// integer decodes a raw JSON value as an integer, as encoding/json decodes into an int64;
// ok is false when it is empty, null or not such an integer.
func integer(v json.RawMessage) (int64, bool) {
	if len(v) == 0 || string(v) == "null" {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, true
	}
	// An integral value in another form (1e3, 2.0) decodes as encoding/json would.
	return decodeInteger(v)
}

// decodeInteger is integer's slow path, apart so that the common one does not allocate.
func decodeInteger(v json.RawMessage) (int64, bool) {
	var n int64
	return n, json.Unmarshal(v, &n) == nil
}

// flag decodes the field named name as a boolean: true only for the literal true.
func (b *reqBody) flag(name string) bool { return string(b.get(name)) == "true" }

// forward returns a copy of the body without the fields in drop and without repeated names
// (the last one is kept, as get reads it). A form keeps every file part: image[] repeats
// by design.
func (b *reqBody) forward(drop []string) *reqBody {
	out := &reqBody{fields: make([]bodyField, 0, len(b.fields)), form: b.form, header: b.header}
next:
	for i, f := range b.fields {
		for _, d := range drop {
			if string(f.name) == d {
				continue next
			}
		}
		for _, g := range b.fields[i+1:] {
			if !f.isFile() && !g.isFile() && bytes.Equal(g.name, f.name) {
				continue next
			}
		}
		out.fields = append(out.fields, f)
	}
	return out
}

func (f *bodyField) isFile() bool { return f.part != nil && f.part.file }

// set replaces the value of the field named name, or adds the field. In a form, val must
// be a JSON string; the field is then written as a plain text part.
func (b *reqBody) set(name string, val json.RawMessage) {
	for i := len(b.fields) - 1; i >= 0; i-- {
		if string(b.fields[i].name) == name {
			b.fields[i].val, b.fields[i].part = val, nil
			return
		}
	}
	key, _ := json.Marshal(name)
	b.fields = append(b.fields, bodyField{name: []byte(name), key: key, val: val})
}

// encode writes the body, as a JSON object or as a form, and returns its content type.
func (b *reqBody) encode() (body []byte, contentType string) {
	if b.form {
		return b.encodeForm()
	}
	return b.encodeJSON(), "application/json"
}

func (b *reqBody) encodeForm() ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range b.fields {
		if f.part != nil { // as sent
			w, _ := mw.CreatePart(f.part.header) // writes to memory: no error
			_, _ = w.Write(f.part.data)
			continue
		}
		var v string
		_ = json.Unmarshal(f.val, &v) // a JSON string, made by set
		_ = mw.WriteField(string(f.name), v)
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// encodeJSON writes the fields as a JSON object.
func (b *reqBody) encodeJSON() []byte {
	n := 2
	for _, f := range b.fields {
		n += len(f.key) + len(f.val) + 2
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, f := range b.fields {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(append(append(out, f.key...), ':'), f.val...)
	}
	return append(out, '}')
}
