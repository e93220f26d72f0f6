package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// decodeJSON decodes r's body into v, strictly: unknown fields, trailing data and type
// mismatches are 400 errors naming the field.
func decodeJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return badRequest("", "request body required")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("", "read body: %v", err)
	}
	return decodeStrict(body, v, "")
}

// decodeStrict decodes data into v, reporting errors with field names prefixed by prefix
// (e.g. "credentials.").
func decodeStrict(data []byte, v any, prefix string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest(strings.TrimSuffix(prefix, "."), "request body required")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, prefix)
	}
	if dec.More() {
		return badRequest(strings.TrimSuffix(prefix, "."), "malformed JSON: data after the object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest(strings.TrimSuffix(prefix, "."), "malformed JSON: data after the object")
	}
	return nil
}

// jsonError turns a decoding error into a 400 naming the field.
func jsonError(err error, prefix string) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest(strings.TrimSuffix(prefix, "."), "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := prefix + te.Field
		if te.Field == "" {
			return badRequest(strings.TrimSuffix(prefix, "."), "body must be a JSON object, not %s", te.Value)
		}
		return badRequest(field, "%s: expected %s, got %s", field, jsonTypeName(te.Type.String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badRequest(strings.TrimSuffix(prefix, "."), "malformed JSON: unexpected end of input")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := prefix + strings.Trim(name, `"`)
		return badRequest(field, "unknown field %q", field)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return badRequest(strings.TrimSuffix(prefix, "."), "malformed JSON: %v", err)
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "*map["), strings.Contains(goType, "struct"):
		return "an object"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	}
	return fmt.Sprintf("a %s", goType)
}
