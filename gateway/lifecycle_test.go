package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

// TestDrainWaitsForLLMStream: Drain does not return while an LLM completion stream is
// being relayed; once the stream ends it reports that every call finished, and Close
// writes the stream's spend row.
func TestDrainWaitsForLLMStream(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		chunk := func(delta string) {
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}\n\n", delta)
			fl.Flush()
		}
		chunk(`{"role":"assistant","content":"first"}`)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		chunk(`{"content":"second"}`)
		fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
		fl.Flush()
	}))
	t.Cleanup(up.Close)
	g := newTestGateway(t, func(c *Config) {
		c.ModelList = []map[string]any{{
			"model_name":     "gpt",
			"litellm_params": map[string]any{"model": "openai/gpt-x", "api_base": up.URL, "api_key": "sk-upstream"},
			"model_info":     map[string]any{"input_cost_per_token": 0.01, "output_cost_per_token": 0.02},
		}}
	})

	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+testMasterKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.Contains(line, "first") {
		t.Fatalf("first chunk: %q %v (status %d)", line, err, resp.StatusCode)
	}

	drained := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drained <- g.s.Drain(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // give a wrong Drain time to return
	select {
	case <-drained:
		t.Fatal("Drain returned while the LLM stream was still being relayed")
	default:
	}
	close(release)
	var rest strings.Builder
	for {
		line, err := rd.ReadString('\n')
		rest.WriteString(line)
		if err != nil {
			break
		}
	}
	if !strings.Contains(rest.String(), "second") || !strings.Contains(rest.String(), "[DONE]") {
		t.Errorf("rest of the stream: %q", rest.String())
	}
	if ok := <-drained; !ok {
		t.Errorf("Drain reported calls still running after the stream ended")
	}
	if err := g.s.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := g.db.SpendLogs(context.Background(), store.SpendFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Status != "success" || rows[0].CompletionTokens != 7 {
		t.Fatalf("spend rows after drain and close: %+v", rows)
	}
}
