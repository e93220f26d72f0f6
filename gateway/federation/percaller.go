package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/mark3labs/mcp-go/mcp"
)

// Per-caller servers.
//
// A server with Server.PerCaller set (an upstream reached with each user's own
// credentials, such as an OAuth authorization-code upstream) may show every
// caller different tools, prompts and resources, and refuses callers who have
// no credential there. Its lists are therefore never fetched in the
// background: each caller's lists are fetched with that caller's own context
// (so Upstreams applies that caller's credentials), cached per (server,
// principal) in a bounded LRU for Config.CacheTTL, and tool and prompt names
// resolve through the caller's own lists. Calls, reads, prompt gets,
// completions and subscriptions already run with the caller's context.
//
// A caller who has not authorized the upstream yet (Upstreams returned an
// *AuthorizationRequiredError) is not cached: lists omit the server and name
// it, with the URL to open, in _meta[MetaAuthorizationRequired]; a tools/call
// or prompts/get aimed at it (a name with its prefix, or any name on its own
// route) answers that error: JSON-RPC -32042 with a URL elicitation on
// 2025-era sessions, an error whose message carries the URL otherwise. The
// next request after the user authorized fetches again.

// MetaAuthorizationRequired is the list-result _meta key naming the per-caller
// servers the caller must authorize first: an object mapping server name to
// the URL to open in a browser.
const MetaAuthorizationRequired = "toolgate/authorization_required"

// AuthorizationRequiredError means the caller has no credential at an upstream
// yet: a person must open URL in a browser to authorize it. Upstreams return
// it (or wrap it) for per-caller servers. It converts to mcp-go's
// URLElicitationRequiredError (errors.As), so 2025-era clients receive a
// -32042 URL elicitation.
type AuthorizationRequiredError struct {
	Server string // the server's name
	URL    string // where the user authorizes the upstream
	Err    error  // the cause, if any
}

func (e *AuthorizationRequiredError) Error() string {
	return fmt.Sprintf("MCP server %s needs your authorization: open %s in a browser, then retry", e.Server, e.URL)
}

func (e *AuthorizationRequiredError) Unwrap() error { return e.Err }

// As lets mcp-go find a URL elicitation in the error.
func (e *AuthorizationRequiredError) As(target any) bool {
	t, ok := target.(*mcp.URLElicitationRequiredError)
	if !ok {
		return false
	}
	*t = mcp.URLElicitationRequiredError{Elicitations: []mcp.ElicitationParams{{
		Mode:          mcp.ElicitationModeURL,
		Message:       e.Error(),
		URL:           e.URL,
		ElicitationID: "toolgate-authorize-" + e.Server,
	}}}
	return true
}

// callerKey names one caller's lists of one per-caller server.
type callerKey struct{ server, principal string }

// callerCache holds per-caller lists.
type callerCache = expirable.LRU[callerKey, *serverLists]

func newCallerCache(size int, ttl time.Duration) *callerCache {
	return expirable.NewLRU[callerKey, *serverLists](size, nil, ttl)
}

// listsFor returns the lists the caller in ctx sees of st: the shared ones, or
// for a per-caller server that caller's own (created empty on first use).
func (f *Federation) listsFor(ctx context.Context, st *serverState) *serverLists {
	if !st.cfg.PerCaller {
		return st.lists
	}
	k := callerKey{st.cfg.Name, f.principal(ctx)}
	f.callerMu.Lock()
	defer f.callerMu.Unlock()
	if l, ok := f.callers.Get(k); ok {
		return l
	}
	l := &serverLists{}
	f.callers.Add(k, l)
	return l
}

// forgetCaller drops the caller's lists of st, so the next request fetches them
// again.
func (f *Federation) forgetCaller(ctx context.Context, st *serverState, l *serverLists) {
	k := callerKey{st.cfg.Name, f.principal(ctx)}
	f.callerMu.Lock()
	defer f.callerMu.Unlock()
	if cur, ok := f.callers.Peek(k); ok && cur == l {
		f.callers.Remove(k)
	}
}

// forgetServerCaller drops the caller's lists of st, whatever they are.
func (f *Federation) forgetServerCaller(ctx context.Context, st *serverState) {
	f.callerMu.Lock()
	defer f.callerMu.Unlock()
	f.callers.Remove(callerKey{st.cfg.Name, f.principal(ctx)})
}

// forgetServer drops every caller's lists of the named server (all servers
// when server is "").
func (f *Federation) forgetServer(server string) {
	f.callerMu.Lock()
	defer f.callerMu.Unlock()
	if server == "" {
		f.callers.Purge()
		return
	}
	for _, k := range f.callers.Keys() {
		if k.server == server {
			f.callers.Remove(k)
		}
	}
}

// valuesCtx has the values of vals (a per-caller fetch: the caller's
// principal and credentials) and the deadline and cancellation of the embedded
// context: the fetch runs in the background, shared by that caller's
// concurrent requests, and must not end with the request that started it.
type valuesCtx struct {
	context.Context
	vals context.Context
}

func (c valuesCtx) Value(key any) any { return c.vals.Value(key) }

// authorizationRequired returns the error of the caller's last failed fetch of
// st when it asked for authorization.
func authorizationRequired(err error) (*AuthorizationRequiredError, bool) {
	var are *AuthorizationRequiredError
	if errors.As(err, &are) {
		return are, true
	}
	return nil, false
}

// aimsAt reports whether a tool or prompt name on scope sc is aimed at st:
// any name on st's own route, or a name with st's prefix on aggregate routes.
func aimsAt(sc scope, st *serverState, name string) bool {
	if sc.single != "" {
		return sc.single == st.cfg.Name
	}
	s, _ := sanitize(st.cfg.Name, false)
	if s == "" {
		s = "_"
	}
	return strings.HasPrefix(name, s+"-")
}

// authMeta notes servers awaiting the caller's authorization in a list
// result's _meta.
func authMeta(m *mcp.Meta, need []needAuth) *mcp.Meta {
	if len(need) == 0 {
		return m
	}
	if m == nil {
		m = &mcp.Meta{}
	}
	if m.AdditionalFields == nil {
		m.AdditionalFields = map[string]any{}
	}
	urls := make(map[string]string, len(need))
	for _, n := range need {
		urls[n.st.cfg.Name] = n.err.URL
	}
	m.AdditionalFields[MetaAuthorizationRequired] = urls
	return m
}
