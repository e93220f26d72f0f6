package gateway

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUpstreamDialRefusesPrivate: the upstream dialer refuses link-local and metadata
// addresses at connect time (what a registered hostname may resolve to later), before any
// packet is sent, and still reaches ordinary addresses.
func TestUpstreamDialRefusesPrivate(t *testing.T) {
	d := upstreamDialer(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, addr := range []string{"169.254.169.254:80", "[fe80::1%lo]:80", "100.100.100.200:80", "[fd00:ec2::254]:80", "0.0.0.0:80"} {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			t.Errorf("dial %s: connected, want refused", addr)
			continue
		}
		if !strings.Contains(err.Error(), "allow_private_upstreams") {
			t.Errorf("dial %s: %v, want the refusal naming allow_private_upstreams", addr, err)
		}
	}
	ts := httptest.NewServer(nil)
	defer ts.Close()
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatalf("dial loopback upstream: %v", err)
	}
	conn.Close()
	if upstreamDialer(true).Control != nil {
		t.Errorf("allow_private_upstreams: true still installs the check")
	}
}

// TestUpstreamClientRefusesMetadata: the gateway's own upstream client (the one the pool
// uses when Config.HTTPClient is nil) carries the check.
func TestUpstreamClientRefusesMetadata(t *testing.T) {
	if os.Getenv("HTTP_PROXY") != "" || os.Getenv("http_proxy") != "" {
		t.Skip("an HTTP proxy is configured: the dial would go to the proxy")
	}
	g := newTestGateway(t, nil)
	c, _ := g.s.upstreamClient()
	_, err := c.Get("http://169.254.169.254/latest/meta-data/")
	if err == nil || !strings.Contains(err.Error(), "allow_private_upstreams") {
		t.Fatalf("GET metadata through the upstream client: %v, want refused", err)
	}
}
