package toolsets

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// Errors returned by Policy.Compile when a request narrows itself to a toolset.
var (
	// ErrUnknownToolset means the requested toolset does not exist.
	ErrUnknownToolset = errors.New("unknown toolset")
	// ErrToolsetNotGranted means the requested toolset exists but no level of the caller's
	// chain grants it.
	ErrToolsetNotGranted = errors.New("toolset not granted")
)

// Level names, as they appear in a Decision's chain.
const (
	LevelKey  = "key"
	LevelTeam = "team"
	LevelUser = "user"
	LevelOrg  = "org"
)

// Rule names that are not levels.
const (
	RuleGrants       = "grants"        // no level granted anything
	RuleToolset      = "toolset"       // the requested toolset does not contain the tool
	RuleAllowedTools = "allowed_tools" // the server does not expose the tool
	RuleBlockedTools = "blocked_tools" // a level blocks the tool
	RuleNetwork      = "network"       // the server is internal-only and the caller is external
)

// Level is one link of a caller's chain: the object permission of a key, team, user or org.
type Level struct {
	Name       string                  // LevelKey, LevelTeam, LevelUser or LevelOrg
	ID         string                  // the identity's ID, for explanations
	Permission *store.ObjectPermission // nil: the level is absent (same as empty)
}

// Caller is everything the policy needs to know about who is asking.
type Caller struct {
	// Admin skips the grant levels (step 1 of the rule). Blocked tools, allowed_tools and
	// network scope still apply.
	Admin bool
	// Key, Owner and Org are the chain, narrowest first. Owner is the key's team, or the
	// key's user for a personal key. Absent levels have a nil Permission.
	Key, Owner, Org Level
	// Toolset is the toolset the request narrows itself to (x-mcp-toolset-id), by ID or
	// name. Empty: no narrowing.
	Toolset string
	// Internal reports whether the caller's address is internal (see ClientIP, Internal).
	Internal bool
}

// Server is what the policy needs to know about an upstream server.
type Server struct {
	ID, Name     string
	AccessGroups []string
	AllowedTools []string // empty: every upstream tool exists
	AllowAllKeys bool
	Public       bool // available_on_public_internet
}

// ServerOf returns the policy's view of a registered server.
func ServerOf(m *store.MCPServer) *Server {
	return &Server{
		ID:           m.ID,
		Name:         m.Name,
		AccessGroups: m.AccessGroups,
		AllowedTools: m.AllowedTools,
		AllowAllKeys: m.AllowAllKeys,
		Public:       m.AvailableOnPublicInternet,
	}
}

// Policy is an immutable snapshot of the toolsets the rule refers to. It is safe for
// concurrent use. Build a new one when toolsets change.
type Policy struct {
	byID   map[string]*store.Toolset
	byName map[string]*store.Toolset
}

// NewPolicy returns a Policy over the given toolsets.
func NewPolicy(toolsets []*store.Toolset) *Policy {
	p := &Policy{byID: make(map[string]*store.Toolset, len(toolsets)), byName: make(map[string]*store.Toolset, len(toolsets))}
	for _, t := range toolsets {
		p.byID[t.ID] = t
		p.byName[t.Name] = t
	}
	return p
}

// Toolset returns the toolset with the given ID or, failing that, name.
func (p *Policy) Toolset(idOrName string) (*store.Toolset, bool) {
	if t, ok := p.byID[idOrName]; ok {
		return t, true
	}
	t, ok := p.byName[idOrName]
	return t, ok
}

// Compile resolves c's grants against the policy's toolsets into a Subject that answers
// decisions with map lookups. A requested toolset that does not exist returns
// ErrUnknownToolset; one no level grants (and the caller is no admin) returns
// ErrToolsetNotGranted. Both errors name the toolset.
func (p *Policy) Compile(c Caller) (*Subject, error) {
	s := &Subject{admin: c.Admin, internal: c.Internal, blocked: map[string]struct{}{}}
	for _, l := range []Level{c.Key, c.Owner, c.Org} {
		cl := p.compileLevel(l)
		s.levels = append(s.levels, cl)
		if !cl.empty {
			s.anyGrant = true
		}
		if l.Permission != nil {
			for _, b := range l.Permission.BlockedTools {
				s.blocked[b] = struct{}{}
			}
		}
	}
	if c.Toolset != "" {
		t, ok := p.Toolset(c.Toolset)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownToolset, c.Toolset)
		}
		granted := c.Admin
		for _, l := range s.levels {
			if _, ok := l.toolsets[t.ID]; ok {
				granted = true
			}
			if _, ok := l.toolsets[t.Name]; ok {
				granted = true
			}
		}
		if !granted {
			return nil, fmt.Errorf("%w: %q", ErrToolsetNotGranted, c.Toolset)
		}
		s.active = &activeToolset{id: t.ID, name: t.Name, tools: toolIndex(t.Tools)}
	}
	return s, nil
}

// toolIndex maps server (ID or name, as written) -> tool -> present.
func toolIndex(refs []store.ToolRef) map[string]map[string]struct{} {
	m := make(map[string]map[string]struct{})
	for _, r := range refs {
		if m[r.ServerID] == nil {
			m[r.ServerID] = make(map[string]struct{})
		}
		m[r.ServerID][r.ToolName] = struct{}{}
	}
	return m
}

func set(xs []string) map[string]struct{} {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[x] = struct{}{}
	}
	return m
}

func (p *Policy) compileLevel(l Level) *level {
	cl := &level{name: l.Name, id: l.ID, empty: true}
	op := l.Permission
	if op == nil {
		cl.absent = true
		return cl
	}
	cl.servers = set(op.MCPServers)
	cl.groups = set(op.MCPAccessGroups)
	cl.toolsets = set(op.MCPToolsets)
	if len(op.MCPToolPermissions) > 0 {
		cl.toolPerms = make(map[string]map[string]struct{}, len(op.MCPToolPermissions))
		for srv, tools := range op.MCPToolPermissions {
			if len(tools) > 0 {
				cl.toolPerms[srv] = set(tools)
			}
		}
	}
	cl.empty = len(cl.servers) == 0 && len(cl.groups) == 0 && len(cl.toolsets) == 0 && len(cl.toolPerms) == 0
	for _, id := range op.MCPToolsets {
		t, ok := p.byID[id]
		if !ok {
			t, ok = p.byName[id]
		}
		if !ok {
			continue // an unknown toolset grants nothing; the level stays non-empty
		}
		if cl.toolsetTools == nil {
			cl.toolsetTools = make(map[string]map[string]struct{})
		}
		for _, r := range t.Tools {
			if cl.toolsetTools[r.ServerID] == nil {
				cl.toolsetTools[r.ServerID] = make(map[string]struct{})
			}
			cl.toolsetTools[r.ServerID][r.ToolName] = struct{}{}
		}
	}
	return cl
}

// level is a compiled Level.
type level struct {
	name, id     string
	absent       bool
	empty        bool
	servers      map[string]struct{}
	groups       map[string]struct{}
	toolsets     map[string]struct{}
	toolPerms    map[string]map[string]struct{} // server ID or name -> tools
	toolsetTools map[string]map[string]struct{} // server ID or name -> tools, from mcp_toolsets
}

// lookup returns m[srv.ID] or m[srv.Name].
func lookup(m map[string]map[string]struct{}, srv *Server) map[string]struct{} {
	if m == nil {
		return nil
	}
	if t, ok := m[srv.ID]; ok {
		return t
	}
	return m[srv.Name]
}

func has(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

// grants reports whether a non-empty level grants tool on srv, or, with tool "", grants
// srv at all; how says which field did.
func (l *level) grants(srv *Server, tool string) (ok bool, how string) {
	whole := has(l.servers, srv.ID) || has(l.servers, srv.Name)
	how = "mcp_servers"
	if !whole && l.groups != nil {
		for _, g := range srv.AccessGroups {
			if has(l.groups, g) {
				whole, how = true, "mcp_access_groups"
				break
			}
		}
	}
	tp := lookup(l.toolPerms, srv)
	ts := lookup(l.toolsetTools, srv)
	if tool == "" {
		switch {
		case whole:
			return true, how
		case tp != nil:
			return true, "mcp_tool_permissions"
		case ts != nil:
			return true, "mcp_toolsets"
		}
		return false, ""
	}
	if whole && tp == nil {
		return true, how
	}
	if has(tp, tool) {
		return true, "mcp_tool_permissions"
	}
	if has(ts, tool) {
		return true, "mcp_toolsets"
	}
	return false, ""
}

type activeToolset struct {
	id, name string
	tools    map[string]map[string]struct{}
}

// Subject is a caller compiled against a Policy. It is immutable and safe for concurrent
// use.
type Subject struct {
	admin    bool
	internal bool
	anyGrant bool
	levels   []*level
	blocked  map[string]struct{}
	active   *activeToolset
}

// Allow reports whether the subject may list and call tool on srv.
func (s *Subject) Allow(srv *Server, tool string) bool {
	ok, _, _ := s.decide(srv, tool, nil)
	return ok
}

// AllowServer reports whether srv is visible to the subject at all.
func (s *Subject) AllowServer(srv *Server) bool {
	ok, _, _ := s.decide(srv, "", nil)
	return ok
}

// Decision is a verdict and the chain of steps that produced it.
type Decision struct {
	Allowed  bool   `json:"allowed"`
	DeniedBy string `json:"denied_by,omitempty"` // the rule that denied: a level name or a Rule* constant
	Reason   string `json:"reason,omitempty"`
	Chain    []Step `json:"chain"`
}

// Step is one rule's outcome.
type Step struct {
	Rule   string `json:"rule"`
	ID     string `json:"id,omitempty"`
	Result string `json:"result"` // "allow", "deny", "inherit", "bypass", "skip"
	Detail string `json:"detail,omitempty"`
}

// Explain is Allow (or, with tool "", AllowServer) with the chain of steps recorded.
func (s *Subject) Explain(srv *Server, tool string) Decision {
	var chain []Step
	ok, rule, reason := s.decide(srv, tool, &chain)
	return Decision{Allowed: ok, DeniedBy: rule, Reason: reason, Chain: chain}
}

// decide is the rule documented in the package comment. With trace nil it stops at the
// first denial; otherwise it evaluates every step and appends it to trace. It returns the
// verdict and, when denied, the rule that denied and why.
func (s *Subject) decide(srv *Server, tool string, trace *[]Step) (allowed bool, deniedBy, reason string) {
	deny := func(rule, why string) {
		if deniedBy == "" {
			deniedBy, reason = rule, why
		}
	}
	step := func(rule, id, result, detail string) {
		if trace != nil {
			*trace = append(*trace, Step{Rule: rule, ID: id, Result: result, Detail: detail})
		}
	}
	subject := "server"
	if tool != "" && trace != nil {
		subject = "tool " + tool
	}

	// 1. key -> owner -> org.
	bypass := ""
	switch {
	case s.admin:
		bypass = "caller is an admin"
	case srv.AllowAllKeys:
		bypass = "server allows all keys"
	}
	for _, l := range s.levels {
		switch {
		case bypass != "":
			if trace != nil {
				step(l.name, l.id, "bypass", bypass)
			}
		case l.empty:
			if trace != nil {
				why := "no MCP grants: inherits"
				if l.absent {
					why = "absent: inherits"
				}
				step(l.name, l.id, "inherit", why)
			}
		default:
			ok, how := l.grants(srv, tool)
			if ok {
				if trace != nil {
					step(l.name, l.id, "allow", "granted by "+how)
				}
				continue
			}
			if trace == nil {
				return false, l.name, ""
			}
			why := fmt.Sprintf("%s grants no access to %s on server %s", l.name, subject, srv.Name)
			step(l.name, l.id, "deny", why)
			deny(l.name, why)
		}
	}
	if bypass == "" && !s.anyGrant {
		if trace == nil {
			return false, RuleGrants, ""
		}
		why := "no level grants any MCP access and the server does not allow all keys"
		step(RuleGrants, "", "deny", why)
		deny(RuleGrants, why)
	}

	// 2. the requested toolset.
	if s.active == nil {
		step(RuleToolset, "", "skip", "request names no toolset")
	} else {
		t := lookup(s.active.tools, srv)
		ok := t != nil && (tool == "" || has(t, tool))
		if ok {
			step(RuleToolset, s.active.id, "allow", "in toolset "+s.active.name)
		} else {
			if trace == nil {
				return false, RuleToolset, ""
			}
			why := fmt.Sprintf("toolset %s does not contain %s on server %s", s.active.name, subject, srv.Name)
			step(RuleToolset, s.active.id, "deny", why)
			deny(RuleToolset, why)
		}
	}

	// 3. server allowed_tools.
	switch {
	case tool == "" || len(srv.AllowedTools) == 0:
		step(RuleAllowedTools, srv.ID, "skip", "server restricts no tools")
	case slices.Contains(srv.AllowedTools, tool):
		step(RuleAllowedTools, srv.ID, "allow", "listed in the server's allowed_tools")
	default:
		if trace == nil {
			return false, RuleAllowedTools, ""
		}
		why := fmt.Sprintf("server %s does not expose tool %s (allowed_tools)", srv.Name, tool)
		step(RuleAllowedTools, srv.ID, "deny", why)
		deny(RuleAllowedTools, why)
	}

	// 4. blocked_tools.
	if tool != "" && len(s.blocked) > 0 {
		var hit string
		for _, k := range [...]string{tool, srv.Name + "-" + tool, srv.ID + "-" + tool} {
			if has(s.blocked, k) {
				hit = k
				break
			}
		}
		if hit != "" {
			if trace == nil {
				return false, RuleBlockedTools, ""
			}
			why := fmt.Sprintf("blocked_tools contains %q", hit)
			step(RuleBlockedTools, "", "deny", why)
			deny(RuleBlockedTools, why)
		} else {
			step(RuleBlockedTools, "", "allow", "not blocked")
		}
	} else {
		step(RuleBlockedTools, "", "skip", "nothing blocked")
	}

	// 5. network scope.
	switch {
	case srv.Public:
		step(RuleNetwork, "", "skip", "server is available on the public internet")
	case s.internal:
		step(RuleNetwork, "", "allow", "caller is internal")
	default:
		if trace == nil {
			return false, RuleNetwork, ""
		}
		why := fmt.Sprintf("server %s is internal-only and the caller is external", srv.Name)
		step(RuleNetwork, "", "deny", why)
		deny(RuleNetwork, why)
	}
	return deniedBy == "", deniedBy, reason
}

// Tools returns the names among offered (tools of srv) that the subject may use, keeping
// their order.
func (s *Subject) Tools(srv *Server, offered []string) []string {
	out := make([]string, 0, len(offered))
	for _, t := range offered {
		if s.Allow(srv, t) {
			out = append(out, t)
		}
	}
	return out
}

// String describes the subject for logs.
func (s *Subject) String() string {
	var b strings.Builder
	if s.admin {
		b.WriteString("admin ")
	}
	for i, l := range s.levels {
		if i > 0 {
			b.WriteString(" -> ")
		}
		b.WriteString(l.name)
		if l.id != "" {
			b.WriteString(":" + l.id)
		}
		if l.empty {
			b.WriteString("(inherit)")
		}
	}
	if s.active != nil {
		b.WriteString(" toolset:" + s.active.id)
	}
	return b.String()
}
