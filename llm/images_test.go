package llm_test

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// editForm builds a multipart image-edit body the way OpenAI's SDKs send one: text
// fields, then files (image[] repeated, a mask).
func editForm(t *testing.T, fields map[string]string, files ...sentFile) (body, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="`+f.field+`"; filename="`+f.name+`"`)
		h.Set("Content-Type", f.contentType)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(f.data))
	}
	_ = mw.Close()
	return buf.String(), mw.FormDataContentType()
}

func TestImageEdits(t *testing.T) {
	up := newFakeOpenAI(t)
	edit := llm.ModelConfig{ModelName: "edit", LiteLLMParams: map[string]any{"model": "openai/gpt-image-edit", "api_base": up.URL, "api_key": "k"},
		ModelInfo: map[string]any{"mode": "image_edit", "output_cost_per_image": 0.05}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{edit, model("gpt", up.URL, nil)}})
	h.setKeyLimit(0.2)
	files := []sentFile{
		{"image[]", "a.png", "image/png", "\x89PNG first \x00\xff"},
		{"image[]", "b.png", "image/png", "\x89PNG second"},
		{"mask", "m.png", "image/png", "\x89PNG mask"},
	}
	// curl -F 'image=<cat.png' sends a file as a plain field: its bytes must pass unchanged.
	fields := map[string]string{"model": "edit", "prompt": "add a red hat", "n": "2", "size": "1024x1024", "image": "\x89PNG \xff\x00 raw"}
	body, ct := editForm(t, fields, files...)
	resp, out := h.post("/v1/images/edits", body, "Content-Type", ct)
	if resp.StatusCode != 200 {
		t.Fatalf("edit: %d %s", resp.StatusCode, out)
	}
	var answer struct{ Data []json.RawMessage }
	if err := json.Unmarshal(out, &answer); err != nil || len(answer.Data) != 2 {
		t.Errorf("answer %s, want 2 images", out)
	}
	sent := up.body()
	want := map[string]any{}
	for k, v := range fields {
		want[k] = v
	}
	want["model"] = "gpt-image-edit"
	if !cmp.Equal(sent, want) {
		t.Errorf("provider got fields %v, want %v (model renamed, the rest as sent)", sent, want)
	}
	if diff := cmp.Diff(files, up.files(), cmp.AllowUnexported(sentFile{})); diff != "" {
		t.Errorf("provider got files (-sent +got):\n%s", diff)
	}
	if !strings.HasSuffix(up.lastPath, "/images/edits") {
		t.Errorf("provider path %s", up.lastPath)
	}
	h.flush()
	if b := h.budget(store.BudgetKey, "key1"); !approx(b.Spend, 2*0.05) {
		t.Errorf("key spend %v, want 2 images x 0.05", b.Spend)
	}
	var row *store.SpendLog
	for _, l := range h.logs() {
		if l.CallType == store.CallImageEdit {
			row = l
		}
	}
	if row == nil || row.Model != "edit" || !approx(row.Spend, 0.1) || row.Status != "success" {
		t.Errorf("spend log row %+v", row)
	}

	// The newer JSON shape (one image, 0.05) (image URLs) is passed on as JSON.
	resp, out = h.post("/images/edits", map[string]any{"model": "edit", "prompt": "p", "images": []any{map[string]any{"image_url": "https://example.invalid/a.png"}}})
	if resp.StatusCode != 200 || up.body()["model"] != "gpt-image-edit" || up.body()["images"] == nil {
		t.Errorf("JSON edit: %d %s; provider got %v", resp.StatusCode, out, up.body())
	}

	// 0.05 is left of 0.2: two more images do not fit.
	resp, out = h.post("/v1/images/edits", body, "Content-Type", ct)
	if typ, _, _, _ := errorOf(t, out); resp.StatusCode != 400 || typ != "budget_exceeded" {
		t.Errorf("edit over budget: %d %s, want 400 budget_exceeded", resp.StatusCode, out)
	}
}

func TestImageEditsRefusesBadForms(t *testing.T) {
	up := newFakeOpenAI(t)
	edit := llm.ModelConfig{ModelName: "edit", LiteLLMParams: map[string]any{"model": "openai/gpt-image-edit", "api_base": up.URL, "api_key": "k"},
		ModelInfo: map[string]any{"mode": "image_edit", "output_cost_per_image": 0.05}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{edit, model("gpt", up.URL, nil)}})
	img := sentFile{"image", "a.png", "image/png", "png"}
	for _, tc := range []struct {
		name, path string
		fields     map[string]string
		param      string
	}{
		{"api_base field", "/v1/images/edits", map[string]string{"model": "edit", "prompt": "p", "api_base": "https://evil.invalid"}, "api_base"},
		{"api_key in metadata", "/v1/images/edits", map[string]string{"model": "edit", "prompt": "p", "metadata": `{"api_key":"sk-stolen"}`}, "metadata.api_key"},
		{"no model", "/v1/images/edits", map[string]string{"prompt": "p"}, "model"},
		{"n not a number", "/v1/images/edits", map[string]string{"model": "edit", "prompt": "p", "n": "two"}, "n"},
		{"form on chat", "/v1/chat/completions", map[string]string{"model": "gpt"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := up.calls.Load()
			body, ct := editForm(t, tc.fields, img)
			resp, out := h.post(tc.path, body, "Content-Type", ct)
			if _, param, _, _ := errorOf(t, out); resp.StatusCode != 400 || param != tc.param {
				t.Errorf("got %d %s, want 400 naming %q", resp.StatusCode, out, tc.param)
			}
			if up.calls.Load() != calls {
				t.Error("the refused request reached the provider")
			}
		})
	}
	resp, out := h.post("/v1/images/edits", "--x\r\nbroken", "Content-Type", "multipart/form-data; boundary=x")
	if resp.StatusCode != 400 {
		t.Errorf("truncated form: %d %s, want 400", resp.StatusCode, out)
	}
}

// TestTokenPricedImages: an image model priced by tokens (gpt-image-1 and later, which
// have no per-image price) is charged its reported usage: text input at the input price,
// input images at the image input price, the generated image at the image output price.
// It reserves the image's tokens by quality and size (the dearest when unset), so a budget
// that cannot pay for a high-quality image refuses it, and one that can pay for a low one
// admits that.
func TestTokenPricedImages(t *testing.T) {
	up := newFakeOpenAI(t)
	up.imageUsage = `{"input_tokens":50,"input_tokens_details":{"text_tokens":40,"image_tokens":10},"output_tokens":4160,"total_tokens":4210}`
	img := llm.ModelConfig{ModelName: "img", LiteLLMParams: map[string]any{"model": "openai/gpt-image-x", "api_base": up.URL, "api_key": "sk-up"},
		ModelInfo: map[string]any{"mode": "image_generation", "input_cost_per_token": 0.001, "input_cost_per_image_token": 0.002, "output_cost_per_image_token": 0.0001}}
	h := newHarness(t, harnessOpts{models: []llm.ModelConfig{img}})
	if resp, body := h.post("/v1/images/generations", map[string]any{"model": "img", "prompt": "a cat", "quality": "high", "size": "1024x1024"}); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h.flush()
	// 40×0.001 + 10×0.002 + 4160×0.0001
	if l := h.logs(); len(l) != 1 || !approx(l[0].Spend, 0.476) || l[0].CompletionTokens != 4160 {
		t.Fatalf("spend log %+v, want one row charged 0.476 for 4160 image tokens", l)
	}

	// A high-quality image of unset size reserves 6240 tokens (0.624), a low-quality
	// square one 272 (0.0272), beside a prompt of a few tokens.
	h.setKeyLimit(0.476 + 0.1)
	resp, body := h.post("/v1/images/generations", map[string]any{"model": "img", "prompt": "a cat"})
	if typ, _, _, _ := errorOf(t, body); resp.StatusCode != 400 || typ != "budget_exceeded" {
		t.Errorf("high quality over budget: %d %s, want budget_exceeded", resp.StatusCode, body)
	}
	calls := up.calls.Load()
	if resp, body := h.post("/v1/images/generations", map[string]any{"model": "img", "prompt": "a cat", "quality": "low", "size": "1024x1024"}); resp.StatusCode != 200 {
		t.Errorf("low quality within budget: %d %s", resp.StatusCode, body)
	}
	if up.calls.Load() != calls+1 {
		t.Errorf("provider calls %d, want only the admitted one after %d", up.calls.Load(), calls)
	}
}
