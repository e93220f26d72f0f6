package federation

import (
	"context"
	"encoding/json"
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

// serverState is one registered server: its configuration, its list caches
// and the views derived from them. The caches outlive SetServers calls that
// keep the server; the views are rebuilt when the caches or Server change.
type serverState struct {
	cfg     Server
	allowed map[string]bool // nil: all tools
	lists   *serverLists

	toolView   atomic.Pointer[toolView]
	promptView atomic.Pointer[promptView]
}

type serverLists struct {
	tools     listCache[mcp.Tool]
	resources listCache[mcp.Resource]
	templates listCache[mcp.ResourceTemplate]
	prompts   listCache[mcp.Prompt]
}

// toolView is a server's tools as shown downstream, in upstream order.
type toolView struct {
	gen      uint64
	original []string   // upstream names
	plain    []mcp.Tool // single-server routes
	prefixed []mcp.Tool // aggregate routes
	byPlain  map[string]int
	byPrefix map[string]int
}

type promptView struct {
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

// tools returns the tool view for items of generation gen, building it if needed.
func (st *serverState) tools(items []mcp.Tool, gen uint64) *toolView {
	if v := st.toolView.Load(); v != nil && v.gen == gen {
		return v
	}
	name := st.cfg.Name
	v := &toolView{gen: gen, byPlain: make(map[string]int, len(items)), byPrefix: make(map[string]int, len(items))}
	for _, t := range items {
		if st.allowed != nil && !st.allowed[t.Name] {
			continue
		}
		orig := t.Name
		plain := t
		if d := st.cfg.ToolNameToDisplayName[orig]; d != "" {
			plain.Name = d
		}
		if d, ok := st.cfg.ToolNameToDescription[orig]; ok {
			plain.Description = d
		}
		plain.Meta = withMeta(t.Meta, name, orig)
		preEncodeSchemas(&plain)
		prefixed := plain
		prefixed.Name = federatedName(name, plain.Name)
		if _, dup := v.byPlain[plain.Name]; dup {
			continue // first wins; upstream lists should not repeat names
		}
		if _, dup := v.byPrefix[prefixed.Name]; dup {
			continue
		}
		i := len(v.original)
		v.original = append(v.original, orig)
		v.plain = append(v.plain, plain)
		v.prefixed = append(v.prefixed, prefixed)
		v.byPlain[plain.Name] = i
		v.byPrefix[prefixed.Name] = i
	}
	st.toolView.Store(v)
	return v
}

// preEncodeSchemas encodes a tool's schemas once, into RawInputSchema and
// RawOutputSchema, so that listing does not re-encode them every time (the
// structured fields are cleared, as mcp.Tool allows only one of each).
func preEncodeSchemas(t *mcp.Tool) {
	if t.RawInputSchema == nil {
		if b, err := json.Marshal(t.InputSchema); err == nil {
			t.RawInputSchema, t.InputSchema = b, mcp.ToolInputSchema{}
		}
	}
	if t.RawOutputSchema == nil && t.OutputSchema.Type != "" {
		if b, err := json.Marshal(t.OutputSchema); err == nil {
			t.RawOutputSchema, t.OutputSchema = b, mcp.ToolOutputSchema{}
		}
	}
}

func (st *serverState) prompts(items []mcp.Prompt, gen uint64) *promptView {
	if v := st.promptView.Load(); v != nil && v.gen == gen {
		return v
	}
	name := st.cfg.Name
	v := &promptView{gen: gen, byPlain: make(map[string]int, len(items)), byPrefix: make(map[string]int, len(items))}
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
	st.promptView.Store(v)
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

// gather fetches one kind of list from servers in parallel, each bounded by
// the list deadline, and calls use for every server that has a list, in
// server order. It returns the servers that had none.
func gather[T any](ctx context.Context, f *Federation, servers []*serverState,
	cache func(*serverState) *listCache[T], fetch func(*serverState) fetcher[T],
	use func(st *serverState, items []T, gen uint64)) (missing []string) {
	type got struct {
		items []T
		gen   uint64
		ok    bool
	}
	results := make([]got, len(servers))
	var cold []int
	for i, st := range servers {
		c := cache(st)
		if _, _, ok := c.snapshot(); ok {
			// Served from cache; get also schedules a refresh when due.
			items, gen, ok := c.get(ctx, f.env(st), fetch(st))
			results[i] = got{items, gen, ok}
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
				st := servers[i]
				items, gen, ok := cache(st).get(wait, f.env(st), fetch(st))
				results[i] = got{items, gen, ok}
			}(i)
		}
		wg.Wait()
		cancel()
	}
	for i, st := range servers {
		if !results[i].ok {
			missing = append(missing, st.cfg.Name)
			continue
		}
		use(st, results[i].items, results[i].gen)
	}
	if len(missing) > 0 {
		f.log.Warn("upstream lists missing", "servers", missing)
	}
	return missing
}

func (f *Federation) env(st *serverState) cacheEnv {
	return cacheEnv{base: f.base, timeout: f.listTimeout, ttl: f.cacheTTL, retryAfter: f.retryAfter, wg: &f.wg, onLookup: f.cfg.OnListCache}
}

func toolsCache(st *serverState) *listCache[mcp.Tool]     { return &st.lists.tools }
func promptsCache(st *serverState) *listCache[mcp.Prompt] { return &st.lists.prompts }
func resourcesCache(st *serverState) *listCache[mcp.Resource] {
	return &st.lists.resources
}
func templatesCache(st *serverState) *listCache[mcp.ResourceTemplate] {
	return &st.lists.templates
}

func (f *Federation) fetchTools(st *serverState) fetcher[mcp.Tool] {
	name := st.cfg.Name
	return func(ctx context.Context) ([]mcp.Tool, error) { return f.up.ListTools(ctx, name) }
}
func (f *Federation) fetchPrompts(st *serverState) fetcher[mcp.Prompt] {
	name := st.cfg.Name
	return func(ctx context.Context) ([]mcp.Prompt, error) { return f.up.ListPrompts(ctx, name) }
}
func (f *Federation) fetchResources(st *serverState) fetcher[mcp.Resource] {
	name := st.cfg.Name
	return func(ctx context.Context) ([]mcp.Resource, error) { return f.up.ListResources(ctx, name) }
}
func (f *Federation) fetchTemplates(st *serverState) fetcher[mcp.ResourceTemplate] {
	name := st.cfg.Name
	return func(ctx context.Context) ([]mcp.ResourceTemplate, error) {
		return f.up.ListResourceTemplates(ctx, name)
	}
}

// listTools returns the caller's tools in sc and the servers that did not answer.
func (f *Federation) listTools(ctx context.Context, sc scope) ([]Tool, []string) {
	servers := f.inScope(ctx, sc)
	var out []Tool
	missing := gather(ctx, f, servers, toolsCache, f.fetchTools, func(st *serverState, items []mcp.Tool, gen uint64) {
		v := st.tools(items, gen)
		shown := v.prefixed
		if sc.single != "" {
			shown = v.plain
		}
		if out == nil {
			out = make([]Tool, 0, len(servers)*len(shown))
		}
		for i, t := range shown {
			if f.allowToolOf(ctx, st, v.original[i]) { // st passed AllowServer in inScope
				out = append(out, Tool{Tool: t, Server: st.cfg.Name, Original: v.original[i]})
			}
		}
	})
	return out, missing
}

// toolRef is a resolved tool.
type toolRef struct {
	st       *serverState
	original string
}

// resolveTool maps a downstream tool name to its server and upstream name.
// On single-server routes both the plain and the prefixed spelling resolve;
// a name prefixed with another server does not. The result is authorized.
func (f *Federation) resolveTool(ctx context.Context, sc scope, name string) (toolRef, bool) {
	servers := f.candidates(sc) // authorized below, for the one match only
	ref, ok, cold := f.lookupTool(servers, sc, name)
	if !ok && cold {
		// Some server's tools were never listed: list them (bounded) and retry.
		gather(ctx, f, servers, toolsCache, f.fetchTools, func(*serverState, []mcp.Tool, uint64) {})
		ref, ok, _ = f.lookupTool(servers, sc, name)
	}
	if !ok || !f.allowTool(ctx, ref.st, ref.original) {
		return toolRef{}, false
	}
	return ref, true
}

func (f *Federation) lookupTool(servers []*serverState, sc scope, name string) (ref toolRef, ok, cold bool) {
	for _, st := range servers {
		items, gen, fetched := st.lists.tools.snapshot()
		if !fetched {
			cold = true
			continue
		}
		v := st.tools(items, gen)
		if sc.single != "" {
			if i, hit := v.byPlain[name]; hit {
				return toolRef{st, v.original[i]}, true, false
			}
		}
		if i, hit := v.byPrefix[name]; hit {
			return toolRef{st, v.original[i]}, true, false
		}
	}
	return toolRef{}, false, cold
}

// listPrompts returns the caller's prompts in sc.
func (f *Federation) listPrompts(ctx context.Context, sc scope) ([]mcp.Prompt, []string) {
	servers := f.inScope(ctx, sc)
	var out []mcp.Prompt
	missing := gather(ctx, f, servers, promptsCache, f.fetchPrompts, func(st *serverState, items []mcp.Prompt, gen uint64) {
		v := st.prompts(items, gen)
		if sc.single != "" {
			out = append(out, v.plain...)
		} else {
			out = append(out, v.prefixed...)
		}
	})
	return out, missing
}

func (f *Federation) resolvePrompt(ctx context.Context, sc scope, name string) (toolRef, bool) {
	servers := f.candidates(sc) // authorized below, for the one match only
	find := func() (toolRef, bool, bool) {
		cold := false
		for _, st := range servers {
			items, gen, fetched := st.lists.prompts.snapshot()
			if !fetched {
				cold = true
				continue
			}
			v := st.prompts(items, gen)
			if sc.single != "" {
				if i, hit := v.byPlain[name]; hit {
					return toolRef{st, v.original[i]}, true, false
				}
			}
			if i, hit := v.byPrefix[name]; hit {
				return toolRef{st, v.original[i]}, true, false
			}
		}
		return toolRef{}, false, cold
	}
	ref, ok, cold := find()
	if !ok && cold {
		gather(ctx, f, servers, promptsCache, f.fetchPrompts, func(*serverState, []mcp.Prompt, uint64) {})
		ref, ok, _ = find()
	}
	if !ok || !f.allowServer(ctx, ref.st.cfg.Name) {
		return toolRef{}, false
	}
	return ref, true
}

// listResources returns the caller's resources in sc, URIs federated on
// aggregate routes.
func (f *Federation) listResources(ctx context.Context, sc scope) ([]mcp.Resource, []string) {
	servers := f.inScope(ctx, sc)
	var out []mcp.Resource
	missing := gather(ctx, f, servers, resourcesCache, f.fetchResources, func(st *serverState, items []mcp.Resource, _ uint64) {
		for _, r := range items {
			r.Meta = withMeta(r.Meta, st.cfg.Name, r.URI)
			if sc.single == "" {
				r.URI = federatedURI(st.cfg.Name, r.URI)
				r.Name = st.cfg.Name + "-" + r.Name
			}
			out = append(out, r)
		}
	})
	return out, missing
}

func (f *Federation) listTemplates(ctx context.Context, sc scope) ([]mcp.ResourceTemplate, []string) {
	servers := f.inScope(ctx, sc)
	var out []mcp.ResourceTemplate
	missing := gather(ctx, f, servers, templatesCache, f.fetchTemplates, func(st *serverState, items []mcp.ResourceTemplate, _ uint64) {
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
	return out, missing
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
	return toolRef{st, original}, true
}

// refreshAll refreshes every list of st in the background.
func (f *Federation) refreshAll(st *serverState) {
	env := f.env(st)
	st.lists.tools.refresh(env, f.fetchTools(st))
	st.lists.prompts.refresh(env, f.fetchPrompts(st))
	st.lists.resources.refresh(env, f.fetchResources(st))
	st.lists.templates.refresh(env, f.fetchTemplates(st))
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
