package toolsets

import (
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name       string
		remote     string
		xff        string
		n          Network
		want       string // "" means the zero Addr
		wantIntern bool
	}{
		{"peer only", "127.0.0.1:5555", "", Network{}, "127.0.0.1", true},
		{"xff ignored when disabled", "203.0.113.9:1", "10.1.1.1", Network{}, "203.0.113.9", false},
		{"xff ignored when disabled, spoof internal", "203.0.113.9:1", "127.0.0.1", Network{}, "203.0.113.9", false},
		{"enabled, no trusted ranges: fail closed", "127.0.0.1:1", "", Network{TrustForwardedFor: true}, "", false},
		{"enabled, no trusted ranges, xff internal: fail closed", "127.0.0.1:1", "10.0.0.1", Network{TrustForwardedFor: true}, "", false},
		{"untrusted peer: xff ignored", "203.0.113.9:1", "10.2.3.4", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "203.0.113.9", false},
		{"trusted peer, external client", "10.0.0.5:1", "198.51.100.7", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "198.51.100.7", false},
		{"trusted peer, internal client", "10.0.0.5:1", "192.168.1.2", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "192.168.1.2", true},
		{"right-most untrusted hop wins over spoofed left", "10.0.0.5:1", "127.0.0.1, 198.51.100.7, 10.0.0.6", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "198.51.100.7", false},
		{"trusted peer, empty xff: peer", "10.0.0.5:1", "", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "10.0.0.5", true},
		{"trusted peer, garbage xff: fail closed", "10.0.0.5:1", "not-an-ip", Network{TrustForwardedFor: true, TrustedProxies: proxies}, "", false},
		{"ipv6 peer", "[::1]:80", "", Network{}, "::1", true},
		{"ipv4-mapped v6", "[::ffff:192.168.0.1]:80", "", Network{}, "192.168.0.1", true},
		{"unparseable peer", "pipe", "", Network{}, "", false},
		{"ula", "[fd00::1]:1", "", Network{}, "fd00::1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientIP(tc.remote, tc.xff, tc.n)
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got != want {
				t.Errorf("ClientIP = %v, want %v", got, want)
			}
			if Internal(got) != tc.wantIntern {
				t.Errorf("Internal(%v) = %v, want %v", got, Internal(got), tc.wantIntern)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:80", "1.2.3.4, 10.0.0.2")
	f.Add("[::1]:1", "")
	n := Network{TrustForwardedFor: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		a := ClientIP(remote, xff, n)
		if a.IsValid() && a.Zone() != "" {
			t.Errorf("zone leaked: %v", a)
		}
	})
}
