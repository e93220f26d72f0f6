package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks that every operation in openapi.json is served: with the
// master key, none falls through to the catch-all's "no route" 404, and the public ones
// answer without a key.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	g := newTestGateway(t, nil)
	r := g.do(t, "GET", "/openapi.json", nil)
	if r.status != 200 {
		t.Fatalf("/openapi.json: %d", r.status)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Security *[]any `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Paths) < 10 {
		t.Fatalf("only %d paths", len(doc.Paths))
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			p := param.ReplaceAllString(path, "nope")
			req := httptest.NewRequest(strings.ToUpper(method), p, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+testMasterKey)
			rec := httptest.NewRecorder()
			g.s.Handler().ServeHTTP(rec, req)
			if strings.Contains(rec.Body.String(), "no route for") {
				t.Errorf("%s %s is documented but not served", strings.ToUpper(method), path)
			}
			if op.Security != nil && len(*op.Security) == 0 {
				req := httptest.NewRequest(strings.ToUpper(method), p, nil)
				rec := httptest.NewRecorder()
				g.s.Handler().ServeHTTP(rec, req)
				if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
					t.Errorf("%s %s is documented as public but answered %d", strings.ToUpper(method), path, rec.Code)
				}
			}
		}
	}
}
