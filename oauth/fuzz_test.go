package oauth

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzRedirectURI checks that whatever registration accepts is absolute, fragment-free, and
// http only on loopback, and that matching never lets a non-loopback URI differ from a
// registered one.
func FuzzRedirectURI(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:5555/cb", "https://app.example/cb", "http://localhost/cb", "com.example:/cb",
		"javascript:alert(1)", "http://evil.example/cb", "https://a/cb#frag", "http://[::1]:80/x?y=1", "HTTP://LOCALHOST/cb"} {
		f.Add(s, "http://127.0.0.1:6000/cb")
	}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if checkRedirectURI(registered) == nil {
			u, err := url.Parse(registered)
			if err != nil || !u.IsAbs() || strings.Contains(registered, "#") {
				t.Fatalf("accepted %q", registered)
			}
			if strings.EqualFold(u.Scheme, "http") && !isLoopbackHost(u.Hostname()) {
				t.Fatalf("accepted non-loopback http %q", registered)
			}
		}
		if redirectMatches([]string{registered}, requested) && requested != registered {
			u, err := url.Parse(requested)
			if err != nil || u.Scheme != "http" || !isLoopbackHost(u.Hostname()) {
				t.Fatalf("%q matched %q", requested, registered)
			}
		}
	})
}

// FuzzMCPPath checks that every path the metadata handler accepts is clean.
func FuzzMCPPath(f *testing.F) {
	for _, s := range []string{"/mcp", "/mcp/a,b", "/gh/mcp", "/../mcp", "/mcp//x", "/a/b/c/mcp", "/mcp/gh/sse"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if DefaultIsMCPPath(p) && (strings.Contains(p, "..") && strings.Contains(p, "/../") || strings.Contains(p, "//") || !strings.HasPrefix(p, "/")) {
			t.Fatalf("accepted %q", p)
		}
	})
}
