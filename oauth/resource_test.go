package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toolgate/toolgate/oauth"
)

func TestResourceMetadata(t *testing.T) {
	cases := []struct {
		name, publicURL, path string
		wantStatus            int
		wantResource          string
	}{
		{"root", "https://gw.example.com", "/.well-known/oauth-protected-resource", 200, "https://gw.example.com"},
		{"mcp", "https://gw.example.com", "/.well-known/oauth-protected-resource/mcp", 200, "https://gw.example.com/mcp"},
		{"mcp servers", "https://gw.example.com", "/.well-known/oauth-protected-resource/mcp/github,slack", 200, "https://gw.example.com/mcp/github,slack"},
		{"server mcp", "https://gw.example.com", "/.well-known/oauth-protected-resource/github/mcp", 200, "https://gw.example.com/github/mcp"},
		{"sse", "https://gw.example.com", "/.well-known/oauth-protected-resource/sse", 200, "https://gw.example.com/sse"},
		{"not an MCP route", "https://gw.example.com", "/.well-known/oauth-protected-resource/admin/keys", 404, ""},
		{"traversal", "https://gw.example.com", "/.well-known/oauth-protected-resource/../mcp", 404, ""},
		{"root path, proxy keeps it after well-known", "https://EX.com/tg/", "/.well-known/oauth-protected-resource/tg/mcp", 200, "https://ex.com/tg/mcp"},
		{"root path, proxy strips it", "https://ex.com/tg", "/.well-known/oauth-protected-resource/mcp", 200, "https://ex.com/tg/mcp"},
		{"root path, prefix in front", "https://ex.com/tg", "/tg/.well-known/oauth-protected-resource/github/mcp", 200, "https://ex.com/tg/github/mcp"},
		{"root path, root resource", "https://ex.com/tg", "/.well-known/oauth-protected-resource/tg", 200, "https://ex.com/tg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: tc.publicURL})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status: got %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("CORS: got %q, want *", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			if tc.wantStatus != 200 {
				return
			}
			var md oauth.ResourceMetadata
			if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
				t.Fatal(err)
			}
			base := r.ResourceURL("")
			want := oauth.ResourceMetadata{Resource: tc.wantResource, AuthorizationServers: []string{base},
				ScopesSupported: []string{"mcp"}, BearerMethodsSupported: []string{"header"}}
			if diff := cmp.Diff(want, md); diff != "" {
				t.Errorf("metadata mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourceChallenges(t *testing.T) {
	r, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: "https://ex.com/tg", ScopesSupported: []string{"mcp", "tools"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, got, want string
	}{
		{"no credential, stripped root", r.Challenge("/mcp", nil),
			`Bearer resource_metadata="https://ex.com/.well-known/oauth-protected-resource/tg/mcp", scope="mcp tools"`},
		{"no credential, root kept", r.Challenge("/tg/github/mcp", nil),
			`Bearer resource_metadata="https://ex.com/.well-known/oauth-protected-resource/tg/github/mcp", scope="mcp tools"`},
		{"invalid token", r.Challenge("/mcp/a", &oauth.Error{Status: 401, Code: oauth.CodeInvalidToken, Description: `token "expired"`}),
			`Bearer resource_metadata="https://ex.com/.well-known/oauth-protected-resource/tg/mcp/a", scope="mcp tools", error="invalid_token", error_description="token \"expired\""`},
		{"other error is not named", r.Challenge("/mcp", errors.New("db down")),
			`Bearer resource_metadata="https://ex.com/.well-known/oauth-protected-resource/tg/mcp", scope="mcp tools"`},
		{"insufficient scope", r.InsufficientScope("/mcp", []string{"mcp", "admin"}, "needs admin"),
			`Bearer error="insufficient_scope", scope="mcp admin", resource_metadata="https://ex.com/.well-known/oauth-protected-resource/tg/mcp", error_description="needs admin"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got  %s\nwant %s", tc.got, tc.want)
			}
		})
	}
}

type fakePassthrough map[string][]byte

func (f fakePassthrough) ResourceMetadata(_ context.Context, route string) ([]byte, bool, error) {
	doc, ok := f[route]
	if ok && doc == nil {
		return nil, true, errors.New("none")
	}
	return doc, ok, nil
}

func TestResourcePassthroughMetadata(t *testing.T) {
	r, err := oauth.NewResource(oauth.ResourceConfig{PublicURL: "https://gw", Passthrough: fakePassthrough{
		"/up/mcp":     []byte(`{"resource":"https://gw/up/mcp","authorization_servers":["https://idp"]}`),
		"/broken/mcp": nil,
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/.well-known/oauth-protected-resource/up/mcp", 200, `{"resource":"https://gw/up/mcp","authorization_servers":["https://idp"]}`},
		{"/.well-known/oauth-protected-resource/broken/mcp", http.StatusBadGateway, ""},
	} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status got %d, want %d", tc.path, rec.Code, tc.status)
		}
		if tc.body != "" && rec.Body.String() != tc.body {
			t.Errorf("%s: body got %s, want %s", tc.path, rec.Body, tc.body)
		}
	}
}
