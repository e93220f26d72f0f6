package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/toolsets"
)

// toolsetHeader narrows a request to one toolset the caller was granted.
const toolsetHeader = "X-Mcp-Toolset-Id"

// identity is the permission side of the gateway: it implements federation.Authorizer with
// toolsets, caching each caller's compiled grants. It is created by identityRoutes and
// reachable as s.authorizer.
type identity struct {
	s *Server

	// network says how to find a caller's address behind proxies. Zero: the TCP peer.
	network toolsets.Network

	gen      atomic.Uint64 // bumped when toolsets change
	policyMu sync.Mutex
	policy   atomic.Pointer[policySnapshot]

	subjects *expirable.LRU[subjectKey, *toolsets.Subject]
	servers  atomic.Pointer[serverSnapshot]
	ttl      time.Duration // how long compiled grants and the toolsets are trusted
}

var _ federation.Authorizer = (*identity)(nil)

type policySnapshot struct {
	gen    uint64
	pol    *toolsets.Policy
	expiry time.Time // reloaded after this, to see other processes' toolset changes
}

type serverSnapshot struct {
	reg    *registry
	byName map[string]*toolsets.Server
}

// subjectKey identifies a compiled caller. Key principals come from the admission cache,
// whose entries are replaced (new pointer) whenever the key, its user, team or org change,
// so the pointer is the identity; other principals are keyed by subject.
type subjectKey struct {
	p        *Principal
	subject  string
	toolset  string
	internal bool
	gen      uint64
}

func newIdentity(s *Server) *identity {
	ttl := s.cfg.KeyCacheTTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &identity{s: s, ttl: ttl, subjects: expirable.NewLRU[subjectKey, *toolsets.Subject](20000, nil, ttl)}
}

// identityOf returns the identity of s (set by identityRoutes), or nil.
func (s *Server) identityOf() *identity {
	id, _ := s.authorizer.(*identity)
	return id
}

// setClientNetwork says how to find callers' addresses behind proxies: with
// trustForwardedFor, X-Forwarded-For is believed when the TCP peer is in trusted (and, with
// no trusted ranges, every caller counts as external). The gateway calls it from New with
// its configuration; until then, the TCP peer is the caller.
func (s *Server) setClientNetwork(trustForwardedFor bool, trusted []netip.Prefix) {
	if id := s.identityOf(); id != nil {
		id.network = toolsets.Network{TrustForwardedFor: trustForwardedFor, TrustedProxies: trusted}
	}
}

// toolsetsChanged drops the compiled policy and every compiled caller.
func (id *identity) toolsetsChanged() {
	id.gen.Add(1)
	id.subjects.Purge()
}

// currentPolicy returns the policy over the stored toolsets, loading it when toolsets
// changed since the last load.
func (id *identity) currentPolicy(ctx context.Context) (*toolsets.Policy, uint64, error) {
	gen := id.gen.Load()
	now := time.Now()
	if p := id.policy.Load(); p != nil && p.gen == gen && now.Before(p.expiry) {
		return p.pol, gen, nil
	}
	id.policyMu.Lock()
	defer id.policyMu.Unlock()
	gen = id.gen.Load()
	if p := id.policy.Load(); p != nil && p.gen == gen && now.Before(p.expiry) {
		return p.pol, gen, nil
	}
	ts, err := id.s.store.Toolsets(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("load toolsets: %w", err)
	}
	// A reload starts a new generation so that callers compiled against the old toolsets
	// are compiled again.
	if p := id.policy.Load(); p != nil && p.gen == gen {
		gen = id.gen.Add(1)
	}
	pol := toolsets.NewPolicy(ts)
	id.policy.Store(&policySnapshot{gen: gen, pol: pol, expiry: time.Now().Add(id.ttl)})
	return pol, gen, nil
}

// server returns the policy's view of the registered server with that routing name.
func (id *identity) server(name string) *toolsets.Server {
	reg := id.s.reg.Load()
	if reg == nil {
		return nil
	}
	snap := id.servers.Load()
	if snap == nil || snap.reg != reg {
		snap = &serverSnapshot{reg: reg, byName: make(map[string]*toolsets.Server, len(reg.servers))}
		for _, m := range reg.servers {
			snap.byName[m.Name] = toolsets.ServerOf(m)
		}
		id.servers.Store(snap)
	}
	return snap.byName[name]
}

// callerInfo is what the authorizer needs from the HTTP request, carried in the context.
type callerInfo struct {
	internal bool
	toolset  string
	prepared bool // identityRequest has run: later calls keep this view
}

type callerInfoKey struct{}

func withCallerInfo(ctx context.Context, ci callerInfo) context.Context {
	return context.WithValue(ctx, callerInfoKey{}, ci)
}

func callerInfoFrom(ctx context.Context) (callerInfo, bool) {
	ci, ok := ctx.Value(callerInfoKey{}).(callerInfo)
	return ci, ok
}

// identityRequest prepares an admitted request for the permission checks: it records in
// the context whether the caller's address is internal and which toolset the request
// narrows itself to (x-mcp-toolset-id), and refuses with 403 a toolset the caller was not
// granted. The gateway calls it after admission, before serving MCP and REST tool routes;
// without it, callers count as external and no toolset narrowing applies.
func (s *Server) identityRequest(r *http.Request) (*http.Request, error) {
	id := s.identityOf()
	if id == nil {
		return r, nil
	}
	if prev, ok := callerInfoFrom(r.Context()); ok && prev.prepared {
		return r, nil // admission prepared it already (checkServerAccess)
	}
	ci := callerInfo{
		prepared: true,
		internal: toolsets.Internal(toolsets.ClientIP(r.RemoteAddr, strings.Join(r.Header.Values("X-Forwarded-For"), ","), id.network)),
		toolset:  strings.TrimSpace(r.Header.Get(toolsetHeader)),
	}
	if prev, ok := callerInfoFrom(r.Context()); ok && prev.toolset != "" {
		ci.toolset = prev.toolset // set by the /toolset/{name}/mcp route; the header cannot change it
	}
	if ci.toolset != "" {
		if err := id.checkToolset(r.Context(), PrincipalFrom(r.Context()), ci); err != nil {
			return nil, err
		}
	}
	return r.WithContext(withCallerInfo(r.Context(), ci)), nil
}

// checkToolset refuses a requested toolset the principal may not use.
func (id *identity) checkToolset(ctx context.Context, p *Principal, ci callerInfo) error {
	if p == nil {
		return &Error{Status: http.StatusUnauthorized, Type: "auth_error", Message: "no credential"}
	}
	pol, _, err := id.currentPolicy(ctx)
	if err != nil {
		return err
	}
	c := keyCaller(p)
	c.Toolset, c.Internal = ci.toolset, ci.internal
	if _, err := pol.Compile(c); err != nil {
		if errors.Is(err, toolsets.ErrUnknownToolset) || errors.Is(err, toolsets.ErrToolsetNotGranted) {
			return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "x-mcp-toolset-id",
				Message: fmt.Sprintf("toolset %q is not granted to this caller", ci.toolset)}
		}
		return err
	}
	return nil
}

// subject returns the compiled grants of the caller in ctx, or nil (deny everything).
func (id *identity) subject(ctx context.Context) *toolsets.Subject {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil
	}
	ci, _ := callerInfoFrom(ctx)
	pol, gen, err := id.currentPolicy(ctx)
	if err != nil {
		id.s.log.ErrorContext(ctx, "permission check failed; denying", "err", err)
		return nil
	}
	k := subjectKey{toolset: ci.toolset, internal: ci.internal, gen: gen}
	if p.Kind == KindKey {
		k.p = p
	} else {
		k.subject = p.Kind + "\x00" + p.subject()
	}
	if sub, ok := id.subjects.Get(k); ok {
		return sub
	}
	c := keyCaller(p)
	c.Toolset, c.Internal = ci.toolset, ci.internal
	sub, err := pol.Compile(c)
	if err != nil {
		return nil // a toolset not granted: nothing is visible
	}
	id.subjects.Add(k, sub)
	return sub
}

// AllowServer implements federation.Authorizer.
func (id *identity) AllowServer(ctx context.Context, server string) bool {
	srv := id.server(server)
	if srv == nil {
		return false
	}
	sub := id.subject(ctx)
	return sub != nil && sub.AllowServer(srv)
}

// AllowTool implements federation.Authorizer.
func (id *identity) AllowTool(ctx context.Context, server, tool string) bool {
	srv := id.server(server)
	if srv == nil {
		return false
	}
	sub := id.subject(ctx)
	return sub != nil && sub.Allow(srv, tool)
}

// toolsetRoute serves /toolset/{name}/mcp: the federated MCP endpoint narrowed to one
// toolset, by name or ID. A toolset the caller was not granted gets 403.
func (s *Server) toolsetRoute(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ctx := withCallerInfo(r.Context(), callerInfo{toolset: name})
	r2, err := s.identityRequest(r.WithContext(ctx))
	if err != nil {
		return err
	}
	if s.fed == nil {
		return &Error{Status: http.StatusServiceUnavailable, Message: "MCP federation is not running"}
	}
	u := *r2.URL
	u.Path, u.RawPath = "/mcp", ""
	r2.URL = &u
	s.fed.Handler().ServeHTTP(w, r2)
	return nil
}

// principalFor builds the principal whose access Explain describes: a key (through the
// same loader admission uses), a user or a team.
func (s *Server) principalFor(ctx context.Context, keyID, keyAlias, userID, teamID string) (*Principal, error) {
	switch {
	case keyID != "" || keyAlias != "":
		var k *store.Key
		var err error
		if keyID != "" {
			k, err = s.findKey(ctx, keyID)
		} else if k, err = s.store.KeyByAlias(ctx, keyAlias); errors.Is(err, store.ErrNotFound) {
			return nil, idNotFound("key_alias", "no key with alias %q", keyAlias)
		}
		if err != nil {
			return nil, err
		}
		return s.loadKey(ctx, k.TokenHash)
	case userID != "":
		u, err := s.store.User(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, idNotFound("user_id", "user %q not found", userID)
		} else if err != nil {
			return nil, err
		}
		p := &Principal{Kind: KindKey, User: u, Admin: u.Role == store.RoleProxyAdmin, Subject: "user:" + u.ID}
		if u.OrgID != "" {
			if o, err := s.store.Org(ctx, u.OrgID); err == nil {
				p.Org = o
			}
		}
		return p, nil
	case teamID != "":
		t, err := s.store.Team(ctx, teamID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, idNotFound("team_id", "team %q not found", teamID)
		} else if err != nil {
			return nil, err
		}
		p := &Principal{Kind: KindKey, Team: t, Subject: "team:" + t.ID}
		if t.OrgID != "" {
			if o, err := s.store.Org(ctx, t.OrgID); err == nil {
				p.Org = o
			}
		}
		return p, nil
	}
	return nil, badRequest("key_alias", "one of key_alias, key_id, user_id or team_id is required")
}
