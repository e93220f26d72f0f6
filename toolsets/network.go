package toolsets

import (
	"net"
	"net/netip"
	"strings"
)

// Network says how to find a caller's address behind proxies.
type Network struct {
	// TrustForwardedFor lets X-Forwarded-For name the caller when the TCP peer is in
	// TrustedProxies. If false, the peer is the caller.
	TrustForwardedFor bool
	// TrustedProxies are the proxy ranges whose X-Forwarded-For is believed. With
	// TrustForwardedFor set and no ranges, every caller is treated as external (fail closed).
	TrustedProxies []netip.Prefix
}

func (n Network) trusted(a netip.Addr) bool {
	for _, p := range n.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the caller's address: the TCP peer (remoteAddr, "host:port" or a bare
// address), or, when n trusts forwarding and the peer is a trusted proxy, the right-most
// X-Forwarded-For address that is not itself a trusted proxy. It returns the zero Addr
// (which Internal reports as external) when the address cannot be determined or when
// forwarding is enabled with no trusted ranges. xff is every X-Forwarded-For header value
// joined with commas.
func ClientIP(remoteAddr, xff string, n Network) netip.Addr {
	peer := parseAddr(remoteAddr)
	if !n.TrustForwardedFor {
		return peer
	}
	if len(n.TrustedProxies) == 0 || !peer.IsValid() {
		return netip.Addr{}
	}
	if !n.trusted(peer) || strings.TrimSpace(xff) == "" {
		return peer
	}
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return netip.Addr{} // a garbled chain is not believed
		}
		if !n.trusted(a) || i == 0 {
			return a
		}
	}
	return netip.Addr{}
}

func parseAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap() // a zone would make prefix checks miss it
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

// Internal reports whether a is a loopback, private (RFC 1918, RFC 4193) or link-local
// address. The zero Addr is external.
func Internal(a netip.Addr) bool {
	return a.IsValid() && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())
}
