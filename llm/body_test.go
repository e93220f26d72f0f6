package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBodyRefusesNonObjects(t *testing.T) {
	for _, in := range []string{``, ` `, `[]`, `"x"`, `1`, `null`, `{`, `{"a":1,}`, `{"a":1}{}`, `{"a" 1}`, `{'a':1}`} {
		if _, err := parseBody([]byte(in)); err == nil {
			t.Errorf("parseBody(%q) accepted it", in)
		}
	}
}

func TestBodyForward(t *testing.T) {
	in := ` { "model" : "m", "messages":[{"role":"user","content":"h\u00e9 \"q\" {]"}] ,"max_tokens":5,` +
		`"we\"ird":true, "metadata":{"tags":["a"]}, "n":2, "n":3, "stream" :true, "api_\u006bey":"k"}`
	b, err := parseBody([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := b.integer("n"); !ok || v != 3 {
		t.Errorf("n = %d, %v; want the last value, 3", v, ok)
	}
	if v, _ := b.text("model"); v != "m" {
		t.Errorf("model = %q, want m", v)
	}
	if !b.flag("stream") {
		t.Error("stream = false, want true")
	}
	if v, _ := b.text("api_key"); v != "k" {
		t.Errorf("escaped name api_key = %q, want k", v)
	}
	out := b.forward([]string{"metadata", "api_key"})
	out.set("model", json.RawMessage(`"gpt-4o"`))
	var got, want map[string]any
	if err := json.Unmarshal(out.encodeJSON(), &got); err != nil {
		t.Fatalf("encode made invalid JSON: %v", err)
	}
	_ = json.Unmarshal([]byte(in), &want)
	delete(want, "metadata")
	delete(want, "api_key")
	want["model"] = "gpt-4o"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forwarded body (-want +got):\n%s", diff)
	}
	if n := bytes.Count(out.encodeJSON(), []byte(`"n":`)); n != 1 {
		t.Errorf("forwarded body has %d fields named n, want the last one only", n)
	}
}

func TestBodyInteger(t *testing.T) {
	for in, want := range map[string]int64{`5`: 5, `-3`: -3, `0`: 0} {
		b, _ := parseBody([]byte(`{"max_tokens":` + in + `}`))
		if got, ok := b.integer("max_tokens"); !ok || got != want {
			t.Errorf("%s: got %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{`1.5`, `1e3`, `"5"`, `99999999999999999999`, `null`, `true`} {
		b, _ := parseBody([]byte(`{"max_tokens":` + in + `}`))
		if got, ok := b.integer("max_tokens"); ok {
			t.Errorf("%s: got %d, want not an integer", in, got)
		}
	}
}

// FuzzParseBody checks parseBody against encoding/json: it accepts exactly the objects
// encoding/json decodes into a map, finds the same fields with the same (last) values, and
// forward+encode writes an object that decodes to the same map.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`))
	f.Add([]byte(` {"a\"b" : [1, {"c":"}"}], "a\u0062":null ,"d":-1.5e3,"d":true}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1]`))
	f.Add([]byte("{\"user\":\"a\xffb\",\"n\":1e2,\"m\":-0,\"k\":\"\\u00e9\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]json.RawMessage
		jerr := json.Unmarshal(data, &m)
		b, err := parseBody(data)
		if jerr != nil || m == nil {
			if err == nil {
				t.Fatalf("parseBody accepted %q, encoding/json did not: %v", data, jerr)
			}
			return
		}
		if err != nil {
			t.Fatalf("parseBody refused %q: %v", data, err)
		}
		for k, v := range m {
			if got := b.get(k); !bytes.Equal(got, v) {
				t.Fatalf("%q: field %q = %s, want %s", data, k, got, v)
			}
			var ws string
			werr := json.Unmarshal(v, &ws)
			if gs, ok := b.text(k); ok != (werr == nil && v[0] == '"') || gs != ws {
				t.Fatalf("%q: text(%q) = %q, %v; encoding/json reads %q, %v", data, k, gs, ok, ws, werr)
			}
			var wn int64
			werr = json.Unmarshal(v, &wn)
			if gn, ok := b.integer(k); string(v) != "null" && (ok != (werr == nil) || gn != wn) {
				t.Fatalf("%q: integer(%q) = %d, %v; encoding/json reads %d, %v", data, k, gn, ok, wn, werr)
			}
		}
		var back map[string]json.RawMessage
		if err := json.Unmarshal(b.forward(nil).encodeJSON(), &back); err != nil {
			t.Fatalf("%q: encode wrote invalid JSON: %v", data, err)
		}
		if !cmp.Equal(m, back) {
			t.Fatalf("%q: round trip\n got %v\nwant %v", data, back, m)
		}
	})
}

// FuzzParseForm checks that a multipart body parseForm accepts is written back by encode
// with the same fields, files and file headers, in order.
func FuzzParseForm(f *testing.F) {
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nedit\r\n--b\r\n" +
		"Content-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n"))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n2\r\n--b--\r\n"))
	f.Add([]byte("--b\r\n\r\nno name\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseForm(data, "b")
		if err != nil {
			return
		}
		enc, ct := b.forward(nil).encode()
		_, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatalf("content type %q: %v", ct, err)
		}
		back, err := parseForm(enc, params["boundary"])
		if err != nil {
			t.Fatalf("%q: encode wrote a form parseForm refuses: %v", data, err)
		}
		want := b.forward(nil)
		if len(back.fields) != len(want.fields) {
			t.Fatalf("%q: %d fields back, want %d", data, len(back.fields), len(want.fields))
		}
		for i, g := range back.fields {
			w := want.fields[i]
			if !bytes.Equal(g.name, w.name) || g.isFile() != w.isFile() || !bytes.Equal(g.val, w.val) {
				t.Fatalf("%q: field %d is %q = %s (file %v), want %q = %s (file %v)", data, i, g.name, g.val, g.isFile(), w.name, w.val, w.isFile())
			}
			if !bytes.Equal(g.part.data, w.part.data) || !cmp.Equal(g.part.header, w.part.header) {
				t.Fatalf("%q: part %q changed: %q %v, want %q %v", data, g.name, g.part.data, g.part.header, w.part.data, w.part.header)
			}
		}
	})
}

// FuzzParseCall: whatever body a caller sends to any route, reading what the call asks
// for (model, limits, tags, end user, web searches, tier, image size) either succeeds or
// is a 400 naming the problem, never a panic, and never a negative count to reserve.
func FuzzParseCall(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"user":"u","tags":["a"],"metadata":{"tags":["b"],"user_id":"x"}}`))
	f.Add([]byte(`{"model":"m","input":"hi","tools":[{"type":"web_search","search_context_size":"low"}],"service_tier":"priority","max_output_tokens":9}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"web_search_options":{},"litellm_metadata":"{\"user\":7}"}`))
	f.Add([]byte(`{"model":"m","prompt":"cat","n":2,"quality":"low","size":"1024x1024"}`))
	f.Add([]byte(`{"model":"m","messages":[1],"tools":"web_search","n":"2"}`))
	f.Add([]byte(`{"model":"m","messages":[1],"tools":[{"type":"web_search_1","max_uses":9000000000000000000},{"type":"web_search_1","max_uses":9000000000000000000}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBody(data)
		if err != nil {
			return
		}
		for _, kind := range []string{callChat, callMessages, callResponses, callEmbeddings, callImages, callImageEdits} {
			ci, err := parseCall(b, kind, http.Header{})
			if err != nil {
				var re *requestError
				if !errors.As(err, &re) || re.status != http.StatusBadRequest {
					t.Fatalf("%s %q: error %v, want a 400", kind, data, err)
				}
				continue
			}
			if ci.prompt < 0 || ci.maxTokens < 0 || ci.searches < 0 || ci.n < 1 {
				t.Fatalf("%s %q: %+v", kind, data, ci)
			}
		}
	})
}
