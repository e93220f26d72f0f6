package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Fetch limits used when FetchConfig leaves them zero.
const (
	DefaultFetchTimeout  = 10 * time.Second
	DefaultFetchMaxBytes = 1 << 20
)

// ErrFetchBlocked means an outbound fetch was refused by the SSRF rules.
var ErrFetchBlocked = errors.New("outbound fetch blocked")

// FetchConfig configures the HTTP client the package uses for every outbound fetch:
// metadata, JWKS, client ID metadata documents and token endpoints.
type FetchConfig struct {
	// AllowLoopback permits loopback addresses, and plain http to them. A development and
	// test setting. If false, loopback is refused and only https is fetched.
	AllowLoopback bool `yaml:"allow_loopback"`
	// AllowPrivate permits private (RFC 1918, RFC 4193, CGNAT) addresses, e.g. an IdP on the
	// internal network. Link-local and cloud metadata addresses are refused regardless.
	AllowPrivate bool `yaml:"allow_private"`
	// Timeout bounds one fetch, redirects included. If zero, DefaultFetchTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBytes bounds a response body; longer bodies fail to read. If zero,
	// DefaultFetchMaxBytes.
	MaxBytes int64 `yaml:"max_bytes"`
}

// metadataAddrs are cloud metadata endpoints outside the link-local range.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("100.100.100.200"), // Alibaba
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
}

// checkIP reports why ip may not be dialed, or nil.
func (c FetchConfig) checkIP(ip netip.Addr) error {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: address %s", ErrFetchBlocked, ip)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: link-local address %s", ErrFetchBlocked, ip)
	case ip.IsLoopback():
		if !c.AllowLoopback {
			return fmt.Errorf("%w: loopback address %s", ErrFetchBlocked, ip)
		}
		return nil
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return fmt.Errorf("%w: metadata address %s", ErrFetchBlocked, ip)
		}
	}
	if (ip.IsPrivate() || cgnat.Contains(ip)) && !c.AllowPrivate {
		return fmt.Errorf("%w: private address %s", ErrFetchBlocked, ip)
	}
	return nil
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// checkURL reports why u may not be fetched, or nil. It checks the scheme and literal
// addresses; the dialer checks the address actually dialed.
func (c FetchConfig) checkURL(u *url.URL) error {
	host := u.Hostname()
	if host == "" || u.User != nil {
		return fmt.Errorf("%w: bad URL %q", ErrFetchBlocked, u.Redacted())
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.AllowLoopback || !isLoopbackHost(host) {
			return fmt.Errorf("%w: %s is not https", ErrFetchBlocked, u.Redacted())
		}
	default:
		return fmt.Errorf("%w: scheme %q", ErrFetchBlocked, u.Scheme)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return c.checkIP(ip)
	}
	return nil
}

// isLoopbackHost reports whether host names the loopback interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// NewHTTPClient returns a client that enforces c on every request and redirect: https only
// (http to loopback only with AllowLoopback), the dialed IP checked (so DNS cannot smuggle
// in a forbidden address), no proxy, same-origin redirects only (at most 5), a timeout and
// a body size limit.
func NewHTTPClient(c FetchConfig) *http.Client {
	if c.Timeout <= 0 {
		c.Timeout = DefaultFetchTimeout
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultFetchMaxBytes
	}
	dialer := &net.Dialer{
		Timeout: c.Timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("%w: dial %s", ErrFetchBlocked, address)
			}
			return c.checkIP(ip)
		},
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          20,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   c.Timeout,
		ResponseHeaderTimeout: c.Timeout,
	}
	return &http.Client{
		Timeout:   c.Timeout,
		Transport: &guardTransport{cfg: c, next: tr},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: too many redirects", ErrFetchBlocked)
			}
			first := via[0].URL
			if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
				return fmt.Errorf("%w: cross-origin redirect to %s", ErrFetchBlocked, req.URL.Redacted())
			}
			return nil
		},
	}
}

// guardTransport checks each request URL and limits each response body.
type guardTransport struct {
	cfg  FetchConfig
	next http.RoundTripper
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.cfg.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.cfg.MaxBytes}
	return resp, nil
}

// errTooLarge is returned by a body read past FetchConfig.MaxBytes.
var errTooLarge = errors.New("response body too large")

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe: an exactly-sized body ends cleanly.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// fetchJSON GETs u with client and decodes a 200 JSON response into v.
func fetchJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return &statusError{URL: u, Status: resp.StatusCode}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return fmt.Errorf("GET %s: content type %q is not JSON", u, ct)
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return nil
}

// statusError is a non-200 answer to a fetch.
type statusError struct {
	URL    string
	Status int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: status %d", e.URL, e.Status) }
