package federation

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// Meta keys federation adds to listed items and list results.
const (
	MetaServer  = "toolgate/server"  // the upstream server of a tool, prompt or resource
	MetaName    = "toolgate/name"    // the upstream's own name (or URI) of the item
	MetaMissing = "toolgate/missing" // on list results: servers that did not answer in time
)

// serverState is one registered server: its configuration and its shared
// list caches with the views derived from them (a PerCaller server has lists
// per caller instead, see percaller.go). The caches outlive SetServers calls
// that keep the server; the views are rebuilt when the caches or Server change.
type serverState struct {
	cfg     Server
	allowed map[string]bool // nil: all tools
	lists   *serverLists
}

// serverLists is one set of a server's lists and their views.
type serverLists struct {
	tools     listCache[*toolList]
	resources listCache[[]mcp.Resource]
	templates listCache[[]mcp.ResourceTemplate]
	prompts   listCache[[]mcp.Prompt]

	promptView atomic.Pointer[promptView]
}

// toolList is one fetched upstream tool list, with the parts of each tool's
// encoding that every view of it shares (toolenc.go).
type toolList struct {
	tools []mcp.Tool
	parts []toolParts              // parts[i] encodes tools[i]
	view  atomic.Pointer[toolView] // the last view built, for its owner
}

func newToolList(tools []mcp.Tool) *toolList {
	tl := &toolList{tools: tools, parts: make([]toolParts, len(tools))}
	for i := range tools {
		tl.parts[i] = newToolParts(tools[i])
	}
	return tl
}

// toolView is a server's tools as shown downstream, in upstream order.
type toolView struct {
	owner    *serverState // the configuration it was built with
	original []string     // upstream names
	plain    []mcp.Tool   // as shown on single-server routes
	prefixed []string     // the names on aggregate routes (otherwise as plain)
	byPlain  map[string]int
	byPrefix map[string]int
	// enc holds the tools encoded as json.Marshal encodes them, for the fast
	// tools/list (fastlist.go): [0] plain, [1] prefixed. An entry is nil if
	// that tool cannot be encoded.
	enc [2][][]byte
}

type promptView struct {
	owner    *serverState
	gen      uint64
	original []string
	plain    []mcp.Prompt
	prefixed []mcp.Prompt
	byPlain  map[string]int
	byPrefix map[string]int
}

func newServerState(cfg Server, lists *serverLists) *serverState {
	st := &serverState{cfg: cfg, lists: lists}
	if len(cfg.AllowedTools) > 0 {
		st.allowed = make(map[string]bool, len(cfg.AllowedTools))
		for _, t := range cfg.AllowedTools {
			st.allowed[t] = true
		}
	}
	return st
}

// withMeta returns a copy of m with the federation keys added.
func withMeta(m *mcp.Meta, server, name string) *mcp.Meta {
	out := &mcp.Meta{AdditionalFields: make(map[string]any, 2)}
	if m != nil {
		out.ProgressToken = m.ProgressToken
		maps.Copy(out.AdditionalFields, m.AdditionalFields)
	}
	out.AdditionalFields[MetaServer] = server
	out.AdditionalFields[MetaName] = name
	return out
}

// tools returns st's view of tl, building it if needed (fetchTools builds it
// as soon as the list arrives).
func (st *serverState) tools(tl *toolList) *toolView {
	if v := tl.view.Load(); v != nil && v.owner == st {
		return v
	}
	v := st.buildToolView(tl)
	tl.view.Store(v)
	return v
}

// buildToolView applies st's configuration to tl: allowed tools, display
// names and descriptions, _meta and prefixed names, and encodes each shown
// tool both ways from its parts, without encoding schemas again.
func (st *serverState) buildToolView(tl *toolList) *toolView {
	name := st.cfg.Name
	n := len(tl.tools)
	v := &toolView{owner: st, byPlain: make(map[string]int, n), byPrefix: make(map[string]int, n),
		original: make([]string, 0, n), plain: make([]mcp.Tool, 0, n), prefixed: make([]string, 0, n)}
	// Both encodings of every shown tool go into one buffer: bounds[j] are
	// where tool j's plain encoding starts, and where it and the prefixed
	// one end (all -1 when it has none).
	size := 0
	for i := range tl.parts {
		size += 2 * (len(tl.parts[i].enc) + len(tl.tools[i].Description) + 2*len(tl.tools[i].Name) + len(name) + 96)
	}
	buf := make([]byte, 0, size)
	bounds := make([][3]int, 0, n)
	var meta []byte
	for i := range tl.tools {
		t, p := &tl.tools[i], &tl.parts[i]
		if st.allowed != nil && !st.allowed[t.Name] {
			continue
		}
		orig := t.Name
		plain := *t
		if d := st.cfg.ToolNameToDisplayName[orig]; d != "" {
			plain.Name = d
		}
		if d, ok := st.cfg.ToolNameToDescription[orig]; ok {
			plain.Description = d
		}
		plain.Meta = withMeta(t.Meta, name, orig)
		p.setSchemas(&plain)
		prefixed := federatedName(name, plain.Name)
		if _, dup := v.byPlain[plain.Name]; dup {
			continue // first wins; upstream lists should not repeat names
		}
		if _, dup := v.byPrefix[prefixed]; dup {
			continue
		}
		j := len(v.original)
		v.original = append(v.original, orig)
		v.plain = append(v.plain, plain)
		v.prefixed = append(v.prefixed, prefixed)
		v.byPlain[plain.Name] = j
		v.byPrefix[prefixed] = j

		b := [3]int{-1, -1, -1}
		if p.ok {
			// _meta is encoded once for both.
			b[0] = len(buf)
			var ok bool
			if meta, ok = appendMeta(meta[:0], t.Meta, plain.Meta, name, orig); ok {
				buf = p.appendTool(buf, meta, plain.Description, plain.Name)
				b[1] = len(buf)
				buf = p.appendTool(buf, meta, plain.Description, prefixed)
				b[2] = len(buf)
			} else {
				b[0] = -1
			}
		}
		bounds = append(bounds, b)
	}
	v.enc[0] = make([][]byte, len(bounds))
	v.enc[1] = make([][]byte, len(bounds))
	for j, b := range bounds {
		if b[0] >= 0 {
			v.enc[0][j] = buf[b[0]:b[1]:b[1]]
			v.enc[1][j] = buf[b[1]:b[2]:b[2]]
		}
	}
	return v
}

func (st *serverState) prompts(l *serverLists, items []mcp.Prompt, gen uint64) *promptView {
	if v := l.promptView.Load(); v != nil && v.gen == gen && v.owner == st {
		return v
	}
	name := st.cfg.Name
	v := &promptView{owner: st, gen: gen, byPlain: make(map[string]int, len(items)), byPrefix: make(map[string]int, len(items))}
	for _, p := range items {
		plain := p
		plain.Meta = withMeta(p.Meta, name, p.Name)
		prefixed := plain
		prefixed.Name = federatedName(name, p.Name)
		if _, dup := v.byPlain[plain.Name]; dup {
			continue
		}
		if _, dup := v.byPrefix[prefixed.Name]; dup {
			continue
		}
		i := len(v.original)
		v.original = append(v.original, p.Name)
		v.plain = append(v.plain, plain)
		v.prefixed = append(v.prefixed, prefixed)
		v.byPlain[plain.Name] = i
		v.byPrefix[prefixed.Name] = i
	}
	l.promptView.Store(v)
	return v
}

// registry is an immutable snapshot of the registered servers.
type registry struct {
	byName map[string]*serverState
	byID   map[string]*serverState
	order  []*serverState // by name
}

// scope is the set of servers one request may reach and how names are shown.
type scope struct {
	servers []string // nil: every registered server
	single  string   // set on single-server routes: original names
	key     string   // route identity, bound into session IDs
}

// candidates returns the registered servers of sc, in name order, before
// authorization.
func (f *Federation) candidates(sc scope) []*serverState {
	reg := f.reg.Load()
	if sc.servers == nil {
		return reg.order
	}
	out := make([]*serverState, 0, len(sc.servers))
	for _, name := range sc.servers {
		if st := reg.byName[name]; st != nil && !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b *serverState) int { return strings.Compare(a.cfg.Name, b.cfg.Name) })
	return out
}

// inScope returns the servers of sc the caller may use, in name order.
func (f *Federation) inScope(ctx context.Context, sc scope) []*serverState {
	all := f.candidates(sc)
	out := make([]*serverState, 0, len(all))
	for _, st := range all {
		if f.allowServer(ctx, st.cfg.Name) {
			out = append(out, st)
		}
	}
	return out
}

func (f *Federation) allowServer(ctx context.Context, server string) bool {
	return f.cfg.Authorizer == nil || f.cfg.Authorizer.AllowServer(ctx, server)
}

// allowTool is the one decision for listing and calling a tool: the server
// is allowed (AllowServer), the tool is in the server's AllowedTools and the
// Authorizer allows it (AllowTool).
func (f *Federation) allowTool(ctx context.Context, st *serverState, tool string) bool {
	return f.allowServer(ctx, st.cfg.Name) && f.allowToolOf(ctx, st, tool)
}

// allowToolOf is allowTool for a server already allowed.
func (f *Federation) allowToolOf(ctx context.Context, st *serverState, tool string) bool {
	if st.allowed != nil && !st.allowed[tool] {
		return false
	}
	return f.cfg.Authorizer == nil || f.cfg.Authorizer.AllowTool(ctx, st.cfg.Name, tool)
}

// needAuth is a per-caller server the caller has not authorized yet.
type needAuth struct {
	st  *serverState
	err *AuthorizationRequiredError
}

// gather fetches one kind of list from servers in parallel, each bounded by
// the list deadline, and calls use for every server that has a list, in
// server order (with the lists the caller sees, shared or their own). It
// returns the servers that had none, and apart from them the per-caller
// servers that wait for the caller's authorization.
func gather[L any](ctx context.Context, f *Federation, servers []*serverState,
	cache func(*serverLists) *listCache[L], fetch func(context.Context, *serverState) fetcher[L],
	use func(st *serverState, l *serverLists, items L, gen uint64)) (missing []string, need []needAuth) {
	type got struct {
		l     *serverLists
		items L
		gen   uint64
		ok    bool
	}
	results := make([]got, len(servers))
	var cold []int
	for i, st := range servers {
		l := f.listsFor(ctx, st)
		results[i].l = l
		c := cache(l)
		if _, _, ok := c.snapshot(); ok {
			// Served from cache; get also schedules a refresh when due.
			items, gen, ok := c.get(ctx, f.env(st), fetch(ctx, st))
			results[i] = got{l, items, gen, ok}
			continue
		}
		cold = append(cold, i)
	}
	if len(cold) > 0 {
		wait, cancel := context.WithTimeout(ctx, f.listTimeout)
		var wg sync.WaitGroup
		for _, i := range cold {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				st, l := servers[i], results[i].l
				items, gen, ok := cache(l).get(wait, f.env(st), fetch(ctx, st))
				results[i] = got{l, items, gen, ok}
			}(i)
		}
		wg.Wait()
		cancel()
	}
	for i, st := range servers {
		r := results[i]
		if !r.ok {
			if st.cfg.PerCaller {
				if are, ok := authorizationRequired(cache(r.l).lastErr()); ok {
					// Not cached: the next request, after the user
					// authorized, fetches again.
					f.forgetCaller(ctx, st, r.l)
					need = append(need, needAuth{st, are})
					continue
				}
			}
			missing = append(missing, st.cfg.Name)
			continue
		}
		use(st, r.l, r.items, r.gen)
	}
	if len(missing) > 0 {
		f.log.Warn("upstream lists missing", "servers", missing)
	}
	return missing, need
}

func (f *Federation) env(st *serverState) cacheEnv {
	return cacheEnv{base: f.base, timeout: f.listTimeout, ttl: f.cacheTTL, retryAfter: f.retryAfter, wg: &f.wg, onLookup: f.cfg.OnListCache}
}

func toolsCache(l *serverLists) *listCache[*toolList]          { return &l.tools }
func promptsCache(l *serverLists) *listCache[[]mcp.Prompt]     { return &l.prompts }
func resourcesCache(l *serverLists) *listCache[[]mcp.Resource] { return &l.resources }
func templatesCache(l *serverLists) *listCache[[]mcp.ResourceTemplate] {
	return &l.templates
}

// fetchContext returns how a fetch of st's lists for the caller in ctx makes
// its context: as it is for shared lists, with the caller's values (principal,
// credentials) for a per-caller server.
func fetchContext(caller context.Context, st *serverState) func(context.Context) context.Context {
	if !st.cfg.PerCaller {
		return func(ctx context.Context) context.Context { return ctx }
	}
	vals := context.WithoutCancel(caller)
	return func(ctx context.Context) context.Context { return valuesCtx{Context: ctx, vals: vals} }
}

// fetchTools fetches st's tools and, in the fetch's goroutine, encodes them
// and builds st's view of them (names, _meta, encodings for the fast
// tools/list), so a cold list over many upstreams only joins finished views.
func (f *Federation) fetchTools(caller context.Context, st *serverState) fetcher[*toolList] {
	name, in := st.cfg.Name, fetchContext(caller, st)
	return func(ctx context.Context) (*toolList, error) {
		tools, err := f.up.ListTools(in(ctx), name)
		if err != nil {
			return nil, err
		}
		tl := newToolList(tools)
		st.tools(tl)
		return tl, nil
	}
}
func (f *Federation) fetchPrompts(caller context.Context, st *serverState) fetcher[[]mcp.Prompt] {
	name, in := st.cfg.Name, fetchContext(caller, st)
	return func(ctx context.Context) ([]mcp.Prompt, error) { return f.up.ListPrompts(in(ctx), name) }
}
func (f *Federation) fetchResources(caller context.Context, st *serverState) fetcher[[]mcp.Resource] {
	name, in := st.cfg.Name, fetchContext(caller, st)
	return func(ctx context.Context) ([]mcp.Resource, error) { return f.up.ListResources(in(ctx), name) }
}
func (f *Federation) fetchTemplates(caller context.Context, st *serverState) fetcher[[]mcp.ResourceTemplate] {
	name, in := st.cfg.Name, fetchContext(caller, st)
	return func(ctx context.Context) ([]mcp.ResourceTemplate, error) {
		return f.up.ListResourceTemplates(in(ctx), name)
	}
}

// listTools returns the caller's tools in sc, the servers that did not answer
// and those waiting for the caller's authorization.
func (f *Federation) listTools(ctx context.Context, sc scope) ([]Tool, []string, []needAuth) {
	servers := f.inScope(ctx, sc)
	var out []Tool
	missing, need := gather(ctx, f, servers, toolsCache, f.fetchTools, func(st *serverState, _ *serverLists, tl *toolList, _ uint64) {
		v := st.tools(tl)
		if out == nil {
			out = make([]Tool, 0, len(servers)*len(v.plain))
		}
		prefixed := sc.single == ""
		for i := range v.plain {
			if f.allowToolOf(ctx, st, v.original[i]) { // st passed AllowServer in inScope
				out = append(out, Tool{Tool: v.plain[i], Server: st.cfg.Name, Original: v.original[i], src: toolSrc{v, i, prefixed}})
				if prefixed {
					out[len(out)-1].Tool.Name = v.prefixed[i]
				}
			}
		}
	})
	return out, missing, need
}

// toolRef is a resolved tool, prompt or resource.
type toolRef struct {
	st       *serverState
	original string
	err      error // set instead of original: the caller must authorize st first
}

// resolveTool maps a downstream tool name to its server and upstream name.
// On single-server routes both the plain and the prefixed spelling resolve;
// a name prefixed with another server does not. The result is authorized.
//
// A name aimed at a per-caller server the caller has not authorized yet
// resolves to a ref carrying the *AuthorizationRequiredError.
func (f *Federation) resolveTool(ctx context.Context, sc scope, name string) (toolRef, bool) {
	servers := f.resolveCandidates(ctx, sc)
	ref, ok, cold := f.lookupTool(ctx, servers, sc, name)
	if !ok && cold {
		// Some server's tools were never listed: list them (bounded) and retry.
		_, need := gather(ctx, f, servers, toolsCache, f.fetchTools, func(*serverState, *serverLists, *toolList, uint64) {})
		ref, ok, _ = f.lookupTool(ctx, servers, sc, name)
		if !ok {
			ref, ok = authRef(sc, need, name)
		}
	}
	if !ok {
		return toolRef{}, false
	}
	if ref.err != nil {
		return ref, f.allowServer(ctx, ref.st.cfg.Name)
	}
	if !f.allowTool(ctx, ref.st, ref.original) {
		return toolRef{}, false
	}
	return ref, true
}

// resolveCandidates returns the servers a name in sc may resolve to. They are
// authorized after the lookup, for the one match only, except per-caller
// servers: those are looked up with the caller's credentials, so only when
// the caller may use them.
func (f *Federation) resolveCandidates(ctx context.Context, sc scope) []*serverState {
	all := f.candidates(sc)
	for i, st := range all {
		if st.cfg.PerCaller {
			out := slices.Clone(all[:i])
			for _, st := range all[i:] {
				if !st.cfg.PerCaller || f.allowServer(ctx, st.cfg.Name) {
					out = append(out, st)
				}
			}
			return out
		}
	}
	return all
}

// authRef returns a ref carrying the authorization error of the server in need
// that name is aimed at, if any.
func authRef(sc scope, need []needAuth, name string) (toolRef, bool) {
	for _, n := range need {
		if aimsAt(sc, n.st, name) {
			return toolRef{st: n.st, err: n.err}, true
		}
	}
	return toolRef{}, false
}

func (f *Federation) lookupTool(ctx context.Context, servers []*serverState, sc scope, name string) (ref toolRef, ok, cold bool) {
	for _, st := range servers {
		l := f.listsFor(ctx, st)
		tl, _, fetched := l.tools.snapshot()
		if !fetched {
			cold = true
			continue
		}
		v := st.tools(tl)
		if sc.single != "" {
			if i, hit := v.byPlain[name]; hit {
				return toolRef{st: st, original: v.original[i]}, true, false
			}
		}
		if i, hit := v.byPrefix[name]; hit {
			return toolRef{st: st, original: v.original[i]}, true, false
		}
	}
	return toolRef{}, false, cold
}

// listPrompts returns the caller's prompts in sc.
func (f *Federation) listPrompts(ctx context.Context, sc scope) ([]mcp.Prompt, []string, []needAuth) {
	servers := f.inScope(ctx, sc)
	var out []mcp.Prompt
	missing, need := gather(ctx, f, servers, promptsCache, f.fetchPrompts, func(st *serverState, l *serverLists, items []mcp.Prompt, gen uint64) {
		v := st.prompts(l, items, gen)
		if sc.single != "" {
			out = append(out, v.plain...)
		} else {
			out = append(out, v.prefixed...)
		}
	})
	return out, missing, need
}

func (f *Federation) resolvePrompt(ctx context.Context, sc scope, name string) (toolRef, bool) {
	servers := f.resolveCandidates(ctx, sc)
	find := func() (toolRef, bool, bool) {
		cold := false
		for _, st := range servers {
			l := f.listsFor(ctx, st)
			items, gen, fetched := l.prompts.snapshot()
			if !fetched {
				cold = true
				continue
			}
			v := st.prompts(l, items, gen)
			if sc.single != "" {
				if i, hit := v.byPlain[name]; hit {
					return toolRef{st: st, original: v.original[i]}, true, false
				}
			}
			if i, hit := v.byPrefix[name]; hit {
				return toolRef{st: st, original: v.original[i]}, true, false
			}
		}
		return toolRef{}, false, cold
	}
	ref, ok, cold := find()
	if !ok && cold {
		_, need := gather(ctx, f, servers, promptsCache, f.fetchPrompts, func(*serverState, *serverLists, []mcp.Prompt, uint64) {})
		ref, ok, _ = find()
		if !ok {
			ref, ok = authRef(sc, need, name)
		}
	}
	if !ok || !f.allowServer(ctx, ref.st.cfg.Name) {
		return toolRef{}, false
	}
	return ref, true
}

// listResources returns the caller's resources in sc, URIs federated on
// aggregate routes.
func (f *Federation) listResources(ctx context.Context, sc scope) ([]mcp.Resource, []string, []needAuth) {
	servers := f.inScope(ctx, sc)
	var out []mcp.Resource
	missing, need := gather(ctx, f, servers, resourcesCache, f.fetchResources, func(st *serverState, _ *serverLists, items []mcp.Resource, _ uint64) {
		for _, r := range items {
			r.Meta = withMeta(r.Meta, st.cfg.Name, r.URI)
			if sc.single == "" {
				r.URI = federatedURI(st.cfg.Name, r.URI)
				r.Name = st.cfg.Name + "-" + r.Name
			}
			out = append(out, r)
		}
	})
	return out, missing, need
}

func (f *Federation) listTemplates(ctx context.Context, sc scope) ([]mcp.ResourceTemplate, []string, []needAuth) {
	servers := f.inScope(ctx, sc)
	var out []mcp.ResourceTemplate
	missing, need := gather(ctx, f, servers, templatesCache, f.fetchTemplates, func(st *serverState, _ *serverLists, items []mcp.ResourceTemplate, _ uint64) {
		for _, t := range items {
			if t.URITemplate == nil || t.URITemplate.Template == nil {
				continue
			}
			raw := t.URITemplate.Raw()
			t.Meta = withMeta(t.Meta, st.cfg.Name, raw)
			if sc.single == "" {
				tmpl, err := newURITemplate(federatedURI(st.cfg.Name, raw))
				if err != nil {
					continue
				}
				t.URITemplate = tmpl
				t.Name = st.cfg.Name + "-" + t.Name
			}
			out = append(out, t)
		}
	})
	return out, missing, need
}

// resolveURI maps a downstream resource URI (or template) to its server and
// upstream URI.
func (f *Federation) resolveURI(ctx context.Context, sc scope, uri string) (toolRef, bool) {
	server, original, federated := splitFederatedURI(uri)
	reg := f.reg.Load()
	if sc.single != "" {
		if federated && server != sc.single {
			return toolRef{}, false
		}
		if !federated {
			original = uri
		}
		server = sc.single
	} else if !federated {
		return toolRef{}, false
	}
	st := reg.byName[server]
	if st == nil || !f.allowServer(ctx, server) {
		return toolRef{}, false
	}
	if sc.servers != nil && !slices.Contains(sc.servers, server) {
		return toolRef{}, false
	}
	return toolRef{st: st, original: original}, true
}

// refreshAll refreshes every shared list of st in the background (per-caller
// lists expire instead).
func (f *Federation) refreshAll(st *serverState) {
	if st.cfg.PerCaller {
		return
	}
	env, bg := f.env(st), context.Background()
	st.lists.tools.refresh(env, f.fetchTools(bg, st))
	st.lists.prompts.refresh(env, f.fetchPrompts(bg, st))
	st.lists.resources.refresh(env, f.fetchResources(bg, st))
	st.lists.templates.refresh(env, f.fetchTemplates(bg, st))
}

// refresher refreshes lists older than the TTL until Close.
func (f *Federation) refresher() {
	defer f.wg.Done()
	t := time.NewTicker(f.cacheTTL)
	defer t.Stop()
	for {
		select {
		case <-f.base.Done():
			return
		case <-t.C:
			for _, st := range f.reg.Load().order {
				f.refreshAll(st)
			}
		}
	}
}
