package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// CredentialSource says where admission found the caller's gateway credential.
type CredentialSource int

const (
	// CredentialNone means the caller sent no gateway credential at all.
	CredentialNone CredentialSource = iota
	// CredentialAPIKeyHeader means the gateway credential came in x-toolgate-api-key or
	// x-litellm-api-key, leaving Authorization to the caller.
	CredentialAPIKeyHeader
	// CredentialAuthorization means the gateway credential (key, gateway token or JWT) came
	// in Authorization.
	CredentialAuthorization
)

// ForwardAuthorization is the one decision whether the caller's Authorization header is
// sent to an upstream (LiteLLM's oauth_passthrough, outside the MCP spec): only when the
// upstream is a pass-through server, only when admission did not use Authorization for the
// gateway's own credential, and never when the header carries something shaped like a
// gateway credential (a virtual key "sk-...", or a token this gateway issued).
func ForwardAuthorization(passthrough bool, source CredentialSource, authorization string) bool {
	if !passthrough || authorization == "" || source == CredentialAuthorization {
		return false
	}
	tok := strings.TrimSpace(authorization)
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = strings.TrimSpace(tok[7:])
	}
	switch {
	case strings.HasPrefix(tok, "sk-"), strings.HasPrefix(tok, AccessTokenPrefix), strings.HasPrefix(tok, RefreshTokenPrefix):
		return false
	}
	return true
}

// Defaults used when PassthroughConfig leaves a field zero.
const (
	DefaultPassthroughTTL         = 5 * time.Minute
	DefaultPassthroughNegativeTTL = 30 * time.Second
)

// ErrNoUpstreamMetadata means a pass-through upstream publishes no usable
// protected-resource metadata.
var ErrNoUpstreamMetadata = errors.New("upstream has no protected-resource metadata")

// PassthroughConfig configures a Passthrough.
type PassthroughConfig struct {
	// Route maps an MCP route path ("/github/mcp", "/mcp/github") to the pass-through
	// server serving it alone: its name and MCP URL. ok is false for routes that are not a
	// single pass-through server's own. Required.
	Route func(ctx context.Context, routePath string) (server, upstreamURL string, ok bool)
	// Resource rewrites the upstream document's "resource" to the gateway route's canonical
	// URL, which is what clients connected to. Required.
	Resource *Resource
	// HTTPClient fetches upstream metadata. If nil, NewHTTPClient(FetchConfig{}).
	HTTPClient *http.Client
	// TTL and NegativeTTL bound how long a fetched document, or its absence, is cached. If
	// zero, DefaultPassthroughTTL and DefaultPassthroughNegativeTTL.
	TTL, NegativeTTL time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Passthrough serves pass-through upstreams' protected-resource metadata on the gateway's
// path-aware well-known URLs. Fetches are coalesced per server and cached, failures too
// (for a shorter time). It implements PassthroughMetadata and is safe for concurrent use.
type Passthrough struct {
	cfg    PassthroughConfig
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	cache   map[string]ptEntry   // by server name
	flights map[string]*ptFlight // fetches in progress
}

type ptEntry struct {
	url     string
	doc     map[string]any
	err     error
	expires time.Time
}

type ptFlight struct {
	done chan struct{}
	e    ptEntry
}

var _ PassthroughMetadata = (*Passthrough)(nil)

// NewPassthrough validates cfg and returns a Passthrough. It does no I/O.
func NewPassthrough(cfg PassthroughConfig) (*Passthrough, error) {
	if cfg.Route == nil || cfg.Resource == nil {
		return nil, errors.New("oauth: PassthroughConfig needs Route and Resource")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultPassthroughTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultPassthroughNegativeTTL
	}
	p := &Passthrough{cfg: cfg, client: cfg.HTTPClient, now: cfg.Now, cache: map[string]ptEntry{}, flights: map[string]*ptFlight{}}
	if p.client == nil {
		p.client = NewHTTPClient(FetchConfig{})
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// ResourceMetadata implements PassthroughMetadata: the upstream's document with its
// resource rewritten to the gateway route, or ErrNoUpstreamMetadata (the handler answers
// 502; the gateway never substitutes its own).
func (p *Passthrough) ResourceMetadata(ctx context.Context, routePath string) ([]byte, bool, error) {
	server, upstreamURL, ok := p.cfg.Route(ctx, routePath)
	if !ok {
		return nil, false, nil
	}
	e := p.lookup(ctx, server, upstreamURL)
	if e.err != nil {
		return nil, true, e.err
	}
	doc := make(map[string]any, len(e.doc))
	for k, v := range e.doc {
		doc[k] = v
	}
	doc["resource"] = p.cfg.Resource.ResourceURL(routePath)
	b, err := json.Marshal(doc)
	return b, true, err
}

// Forget drops the cached document of server (call it when the server changes).
func (p *Passthrough) Forget(server string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.cache, server)
}

func (p *Passthrough) lookup(ctx context.Context, server, upstreamURL string) ptEntry {
	p.mu.Lock()
	if e, ok := p.cache[server]; ok && e.url == upstreamURL && p.now().Before(e.expires) {
		p.mu.Unlock()
		return e
	}
	f, ok := p.flights[server]
	if !ok {
		f = &ptFlight{done: make(chan struct{})}
		p.flights[server] = f
		go p.fetch(server, upstreamURL, f)
	}
	p.mu.Unlock()
	select {
	case <-f.done:
		return f.e
	case <-ctx.Done():
		return ptEntry{err: ctx.Err()}
	}
}

// fetch runs detached from any one caller's context, so a caller giving up does not fail
// the others waiting on the same flight.
func (p *Passthrough) fetch(server, upstreamURL string, f *ptFlight) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	doc, err := p.fetchUpstream(ctx, upstreamURL)
	e := ptEntry{url: upstreamURL, doc: doc, err: err, expires: p.now().Add(p.cfg.TTL)}
	if err != nil {
		e.err = fmt.Errorf("%w: %s: %v", ErrNoUpstreamMetadata, server, err)
		e.expires = p.now().Add(p.cfg.NegativeTTL)
	}
	p.mu.Lock()
	p.cache[server] = e
	delete(p.flights, server)
	p.mu.Unlock()
	f.e = e
	close(f.done)
}

// fetchUpstream tries the path-aware well-known URL of upstreamURL, then the root one.
func (p *Passthrough) fetchUpstream(ctx context.Context, upstreamURL string) (map[string]any, error) {
	u, err := url.Parse(upstreamURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad upstream URL %q", upstreamURL)
	}
	base := u.Scheme + "://" + u.Host + WellKnownResource
	candidates := []string{base}
	if path := strings.TrimRight(u.EscapedPath(), "/"); path != "" {
		candidates = []string{base + path, base}
	}
	var lastErr error
	for _, c := range candidates {
		var doc map[string]any
		err := fetchJSON(ctx, p.client, c, &doc)
		if err == nil {
			if as, _ := doc["authorization_servers"].([]any); len(as) == 0 {
				return nil, errors.New("metadata lists no authorization_servers")
			}
			return doc, nil
		}
		lastErr = err
		var se *statusError
		if !errors.As(err, &se) || se.Status < 400 || se.Status >= 500 {
			break // only a 4xx moves on to the next candidate
		}
	}
	return nil, lastErr
}
