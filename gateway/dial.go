package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// metadataAddrs are cloud metadata endpoints outside the link-local ranges checked below.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack (also link-local)
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// forbiddenDial says why an upstream connection to ip is refused, or "" if it is not.
func forbiddenDial(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata endpoint"
		}
	}
	switch {
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	}
	return ""
}

// refusePrivate is a net.Dialer Control function: it runs after the name is resolved and
// before the connection is made, so a registered hostname that later resolves to a
// link-local or metadata address (DNS rebinding) is refused, not only a literal address
// at registration.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("upstream address %q: %w", address, err)
	}
	if why := forbiddenDial(ap.Addr()); why != "" {
		return fmt.Errorf("upstream address %s is %s (allow with general_settings.allow_private_upstreams)", ap.Addr(), why)
	}
	return nil
}

// upstreamDialer returns the dialer for upstream connections.
func upstreamDialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = refusePrivate
	}
	return d
}

// upstreamClient returns the HTTP client for upstream MCP connections: Config.HTTPClient
// when set, else a client of its own whose dialer refuses link-local and metadata
// addresses unless AllowPrivateUpstreams. Either way upstream requests are traced when
// tracing is on. The second result is the client to close at shutdown (nil for the
// caller's).
func (s *Server) upstreamClient() (*http.Client, *http.Client) {
	if hc := s.cfg.HTTPClient; hc != nil {
		if s.cfg.TracerProvider == nil {
			return hc, nil
		}
		c := *hc
		c.Transport = s.tracedTransport(hc.Transport)
		return &c, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	tr.DialContext = upstreamDialer(s.cfg.AllowPrivateUpstreams).DialContext
	// No client timeout: SSE and GET streams live long; every request carries its own deadline.
	c := &http.Client{Transport: s.tracedTransport(tr)}
	return c, c
}
