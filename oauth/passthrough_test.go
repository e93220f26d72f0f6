package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/oauth"
)

func TestForwardAuthorization(t *testing.T) {
	cases := []struct {
		name        string
		passthrough bool
		source      oauth.CredentialSource
		auth        string
		want        bool
	}{
		{"pass-through, key in x-toolgate-api-key", true, oauth.CredentialAPIKeyHeader, "Bearer upstream-token", true},
		{"pass-through, no gateway credential", true, oauth.CredentialNone, "Bearer eyJ.upstream.jwt", true},
		{"not a pass-through server", false, oauth.CredentialNone, "Bearer upstream-token", false},
		{"gateway credential was in Authorization", true, oauth.CredentialAuthorization, "Bearer sk-1234", false},
		{"virtual key never leaves", true, oauth.CredentialNone, "Bearer sk-1234", false},
		{"gateway access token never leaves", true, oauth.CredentialAPIKeyHeader, "Bearer tgat_abc", false},
		{"gateway refresh token never leaves", true, oauth.CredentialAPIKeyHeader, "bearer tgrt_abc", false},
		{"nothing to forward", true, oauth.CredentialNone, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := oauth.ForwardAuthorization(tc.passthrough, tc.source, tc.auth); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPassthroughMetadata(t *testing.T) {
	var fetches atomic.Int64
	release := make(chan struct{})
	up := http.NewServeMux()
	up.HandleFunc("/.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"resource":"https://upstream.example/mcp","authorization_servers":["https://idp.example"],"scopes_supported":["repo"]}`)
	})
	var noneFetches atomic.Int64
	up.HandleFunc("/.well-known/oauth-protected-resource/", func(w http.ResponseWriter, r *http.Request) {
		noneFetches.Add(1)
		http.NotFound(w, r)
	})
	ts := httptest.NewServer(up)
	defer ts.Close()

	res, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: "https://gw.example"})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	var mu sync.Mutex
	pt, err := oauth.NewPassthrough(oauth.PassthroughConfig{
		Resource:   res,
		HTTPClient: devFetch,
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return clock
		},
		Route: func(_ context.Context, route string) (string, string, bool) {
			switch route {
			case "/gh/mcp", "/mcp/gh":
				return "gh", ts.URL + "/mcp", true
			case "/none/mcp":
				return "none", ts.URL + "/nothing/here", true
			}
			return "", "", false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Concurrent first requests share one fetch.
	var wg sync.WaitGroup
	docs := make([][]byte, 10)
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc, ok, err := pt.ResourceMetadata(ctx, "/gh/mcp")
			if !ok || err != nil {
				t.Errorf("ResourceMetadata: %v %v", ok, err)
			}
			docs[i] = doc
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if got := fetches.Load(); got != 1 {
		t.Errorf("coalesced fetches: got %d, want 1", got)
	}
	var md map[string]any
	json.Unmarshal(docs[0], &md)
	if md["resource"] != "https://gw.example/gh/mcp" || md["authorization_servers"].([]any)[0] != "https://idp.example" {
		t.Errorf("served metadata: %v", md)
	}
	doc, _, _ := pt.ResourceMetadata(ctx, "/mcp/gh")
	json.Unmarshal(doc, &md)
	if md["resource"] != "https://gw.example/mcp/gh" || fetches.Load() != 1 {
		t.Errorf("second route from cache: %v, fetches %d", md, fetches.Load())
	}
	if _, ok, _ := pt.ResourceMetadata(ctx, "/other/mcp"); ok {
		t.Errorf("non pass-through route claimed")
	}

	// No metadata upstream: an error (502 at the handler), cached for the negative TTL.
	if _, ok, err := pt.ResourceMetadata(ctx, "/none/mcp"); !ok || !errors.Is(err, oauth.ErrNoUpstreamMetadata) {
		t.Fatalf("missing upstream metadata: got %v %v, want ErrNoUpstreamMetadata", ok, err)
	}
	n := noneFetches.Load()
	pt.ResourceMetadata(ctx, "/none/mcp")
	if noneFetches.Load() != n {
		t.Errorf("negative result was not cached")
	}
	mu.Lock()
	clock = clock.Add(oauth.DefaultPassthroughNegativeTTL + time.Second)
	mu.Unlock()
	pt.ResourceMetadata(ctx, "/none/mcp")
	if noneFetches.Load() == n {
		t.Errorf("negative result outlived its TTL")
	}
	if fetches.Load() != 1 {
		t.Errorf("positive result refetched within its TTL")
	}

	// Through the well-known handler.
	res2, _ := oauth.NewResource(oauth.ResourceConfig{PublicURL: "https://gw.example", Passthrough: pt})
	rec := httptest.NewRecorder()
	res2.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-protected-resource/none/mcp", nil))
	if rec.Code != http.StatusBadGateway {
		t.Errorf("handler for missing upstream metadata: got %d, want 502", rec.Code)
	}
}

func TestFetchSafety(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(make([]byte, 2<<20))
		case "/redirect-away":
			http.Redirect(w, r, "http://localhost:1/elsewhere", http.StatusFound)
		case "/redirect-here":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer ts.Close()
	strict := oauth.NewHTTPClient(oauth.FetchConfig{})
	dev := oauth.NewHTTPClient(oauth.FetchConfig{AllowLoopback: true, MaxBytes: 1 << 20})
	get := func(c *http.Client, u string) error {
		resp, err := c.Get(u)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	cases := []struct {
		name    string
		client  *http.Client
		url     string
		wantErr bool
	}{
		{"loopback refused without the dev flag", strict, ts.URL + "/ok", true},
		{"http refused for non-loopback", dev, "http://example.com/", true},
		{"loopback allowed with the dev flag", dev, ts.URL + "/ok", false},
		{"link-local never", dev, "https://169.254.169.254/latest/meta-data", true},
		{"link-local IPv6 never", dev, "https://[fe80::1]/", true},
		{"metadata IPv6 never", dev, "https://[fd00:ec2::254]/", true},
		{"private refused by default", dev, "https://10.0.0.1/", true},
		{"a name resolving to loopback is checked at dial", strict, "https://localhost:" + ts.URL[len("http://127.0.0.1:"):] + "/", true},
		{"non-http scheme", dev, "file:///etc/passwd", true},
		{"same-origin redirect", dev, ts.URL + "/redirect-here", false},
		{"cross-origin redirect", dev, ts.URL + "/redirect-away", true},
		{"body too large", dev, ts.URL + "/big", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := get(tc.client, tc.url)
			if (err != nil) != tc.wantErr {
				t.Errorf("got %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && tc.name != "body too large" && !errors.Is(err, oauth.ErrFetchBlocked) {
				t.Errorf("got %v, want ErrFetchBlocked", err)
			}
		})
	}
}
