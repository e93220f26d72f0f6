package llm

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckBodyRefusesEveryBannedParam(t *testing.T) {
	for name := range bannedParams {
		cases := map[string]string{
			"top level":              `{"model":"m","` + name + `":"x"}`,
			"in metadata":            `{"model":"m","metadata":{"` + name + `":"x"}}`,
			"in litellm_metadata":    `{"model":"m","litellm_metadata":{"` + name + `":"x"}}`,
			"metadata as JSON":       `{"model":"m","metadata":"{\"` + name + `\":\"x\"}"}`,
			"nested deeper":          `{"model":"m","metadata":{"a":{"b":[{"` + name + `":1}]}}}`,
			"embedding config":       `{"model":"m","litellm_embedding_config":{"` + name + `":"x"}}`,
			"extra_body":             `{"model":"m","extra_body":{"` + name + `":"x"}}`,
			"upper case":             `{"model":"m","` + strings.ToUpper(name) + `":"x"}`,
			"JSON string in nesting": `{"model":"m","metadata":{"inner":"{\"` + name + `\":2}"}}`,
			"escaped name":           `{"model":"m","` + strings.ReplaceAll(name, "_", `\u005f`) + `":"x"}`,
			"repeated name":          `{"model":"m","` + name + `":"x","` + name + `":null}`,
		}
		for what, body := range cases {
			m, err := parseBody([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if p := checkBody(m); p == "" || !strings.Contains(strings.ToLower(p), name) {
				t.Errorf("%s %s: got %q, want refused", name, what, p)
			}
		}
	}
}

func TestCheckBodyAllowsOrdinaryBodies(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"my api_key is {\"api_key\":1}"}]}`,
		`{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"api_key":{"type":"string"}}}}}]}`,
		`{"model":"m","metadata":{"tags":["a"],"trace_id":"x"},"user":"u","max_tokens":5}`,
		`{"model":"m","metadata":"not json"}`,
	} {
		m, err := parseBody([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if p := checkBody(m); p != "" {
			t.Errorf("%s: refused %q", body, p)
		}
	}
}

func TestCheckBodyDepthLimit(t *testing.T) {
	body := `{"metadata":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`
	m, err := parseBody([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if p := checkBody(m); p == "" {
		t.Error("a body nested deeper than the limit was accepted")
	}
}

func FuzzCheckBody(f *testing.F) {
	f.Add([]byte(`{"model":"m","metadata":{"api_base":"x"}}`))
	f.Add([]byte(`{"metadata":"{\"api_key\":\"k\"}"}`))
	f.Add([]byte(`{"extra_body":[{"aws_role_name":1}],"messages":[]}`))
	f.Add([]byte(`{"model":"m"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return
		}
		body, err := parseBody(data)
		if err != nil {
			t.Fatalf("encoding/json reads %q but parseBody refuses it: %v", data, err)
		}
		p := checkBody(body)
		// A refusal names a banned parameter (or a too-deep container); a top-level banned
		// key is always refused.
		for k := range m {
			if bannedParams[strings.ToLower(k)] && p == "" {
				t.Fatalf("top-level %q accepted", k)
			}
		}
	})
}

func TestCostMap(t *testing.T) {
	c := DefaultCostMap()
	if c.Len() < 2000 {
		t.Fatalf("embedded cost map has %d entries", c.Len())
	}
	p, ok := c.Lookup("openai/gpt-4o")
	if !ok || p.InputCostPerToken != 2.5e-6 || p.MaxOutputTokens != 16384 || p.Mode != "chat" {
		t.Errorf("gpt-4o: %+v %v", p, ok)
	}
	tests := []struct {
		max, req, want int64
	}{
		{16384, 0, 16384}, {4096, 0, 4096}, {4096, 100, 100}, {4096, 999999999, 4096}, {0, 0, DefaultOutputAllowance}, {0, 50, 50},
	}
	for _, tc := range tests {
		if got := (Price{MaxOutputTokens: tc.max}).OutputAllowance(tc.req); got != tc.want {
			t.Errorf("OutputAllowance(max %d, req %d) = %d, want %d", tc.max, tc.req, got, tc.want)
		}
	}
	img, _ := c.Lookup("dall-e-3")
	if !img.IsImage() || img.ImageCost(3) != 3*0.04 {
		t.Errorf("dall-e-3 %+v", img)
	}
	// A chat model with image fields is priced by tokens.
	if (Price{Mode: "chat", InputCostPerImage: 1}).IsImage() {
		t.Error("chat model priced per image")
	}
	over, err := p.withOverrides(map[string]any{"input_cost_per_token": 1.0, "max_output_tokens": 10})
	if err != nil || over.InputCostPerToken != 1 || over.MaxOutputTokens != 10 || over.OutputCostPerToken != p.OutputCostPerToken {
		t.Errorf("override %+v %v", over, err)
	}
}
