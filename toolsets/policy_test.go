package toolsets

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/store"
)

var (
	srvA  = &Server{ID: "id-a", Name: "alpha", AccessGroups: []string{"dev"}, Public: true}
	srvB  = &Server{ID: "id-b", Name: "beta", Public: true}
	srvI  = &Server{ID: "id-i", Name: "intra"} // internal only
	srvAK = &Server{ID: "id-ak", Name: "open", AllowAllKeys: true, Public: true}
	srvR  = &Server{ID: "id-r", Name: "restricted", AllowedTools: []string{"t1"}, Public: true}

	tsA2 = &store.Toolset{ID: "ts-a2", Name: "alpha-two", Tools: []store.ToolRef{{ServerID: "id-a", ToolName: "t2"}}}
	tsB1 = &store.Toolset{ID: "ts-b1", Name: "beta-one", Tools: []store.ToolRef{{ServerID: "beta", ToolName: "t1"}}}
)

func op(f func(*store.ObjectPermission)) *store.ObjectPermission {
	p := &store.ObjectPermission{}
	if f != nil {
		f(p)
	}
	return p
}

var (
	permEmpty  = op(nil)
	permA      = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-a"} })
	permAName  = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"alpha"} })
	permB      = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-b"} })
	permAB     = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-a", "beta"} })
	permDev    = op(func(p *store.ObjectPermission) { p.MCPAccessGroups = []string{"dev"} })
	permA1     = op(func(p *store.ObjectPermission) { p.MCPToolPermissions = map[string][]string{"id-a": {"t1"}} })
	permTSA2   = op(func(p *store.ObjectPermission) { p.MCPToolsets = []string{"ts-a2"} })
	permTSBoth = op(func(p *store.ObjectPermission) { p.MCPToolsets = []string{"ts-a2", "beta-one"} })
	permAll    = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-a", "id-b", "id-i", "id-r"} })
	permBlkT1  = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-a"}; p.BlockedTools = []string{"t1"} })
	permBlkAT2 = op(func(p *store.ObjectPermission) { p.BlockedTools = []string{"alpha-t2"} })
	permGhost  = op(func(p *store.ObjectPermission) { p.MCPToolsets = []string{"no-such-toolset"} })
)

func caller(key, team, org *store.ObjectPermission) Caller {
	return Caller{
		Key:   Level{Name: LevelKey, ID: "k1", Permission: key},
		Owner: Level{Name: LevelTeam, ID: "t1", Permission: team},
		Org:   Level{Name: LevelOrg, ID: "o1", Permission: org},
	}
}

func TestDecide(t *testing.T) {
	pol := NewPolicy([]*store.Toolset{tsA2, tsB1})
	type tc struct {
		name     string
		c        Caller
		srv      *Server
		tool     string
		want     bool
		deniedBy string
	}
	with := func(c Caller, f func(*Caller)) Caller { f(&c); return c }
	tests := []tc{
		// grants alone
		{"nothing anywhere", caller(nil, nil, nil), srvA, "t1", false, RuleGrants},
		{"all empty", caller(permEmpty, permEmpty, permEmpty), srvA, "t1", false, RuleGrants},
		{"key grants server by id", caller(permA, nil, nil), srvA, "t1", true, ""},
		{"key grants server by name", caller(permAName, nil, nil), srvA, "t9", true, ""},
		{"key grants other server", caller(permB, nil, nil), srvA, "t1", false, LevelKey},
		{"key empty inherits team", caller(permEmpty, permA, nil), srvA, "t1", true, ""},
		{"key absent inherits org", caller(nil, nil, permA), srvA, "t1", true, ""},
		{"key and team both empty, org denies", caller(nil, permEmpty, permB), srvA, "t1", false, LevelOrg},
		{"key narrowed by team", caller(permAB, permB, nil), srvA, "t1", false, LevelTeam},
		{"key narrowed by team keeps shared", caller(permAB, permB, nil), srvB, "t1", true, ""},
		{"team narrowed by org", caller(nil, permAB, permA), srvB, "t1", false, LevelOrg},
		{"key cannot widen team", caller(permAB, permA, nil), srvB, "t1", false, LevelTeam},
		{"key cannot widen org", caller(permAB, nil, permA), srvB, "t1", false, LevelOrg},
		{"access group", caller(permDev, nil, nil), srvA, "t1", true, ""},
		{"access group misses server", caller(permDev, nil, nil), srvB, "t1", false, LevelKey},
		{"tool permissions allow listed tool", caller(permA1, nil, nil), srvA, "t1", true, ""},
		{"tool permissions deny other tool", caller(permA1, nil, nil), srvA, "t2", false, LevelKey},
		{"team tool permissions narrow key server", caller(permA, permA1, nil), srvA, "t2", false, LevelTeam},
		{"team tool permissions keep listed", caller(permA, permA1, nil), srvA, "t1", true, ""},
		// toolsets granted through mcp_toolsets
		{"toolset grant allows its tool", caller(permTSA2, nil, nil), srvA, "t2", true, ""},
		{"toolset grant denies other tool", caller(permTSA2, nil, nil), srvA, "t1", false, LevelKey},
		{"toolset grant by name, server by name", caller(permTSBoth, nil, nil), srvB, "t1", true, ""},
		{"toolset grant narrowed by team", caller(permTSBoth, permB, nil), srvA, "t2", false, LevelTeam},
		{"unknown toolset grants nothing", caller(permGhost, nil, nil), srvA, "t1", false, LevelKey},
		{"unknown toolset still narrows", caller(permA, permGhost, nil), srvA, "t1", false, LevelTeam},
		// requested toolset (x-mcp-toolset-id)
		{"requested toolset narrows", with(caller(permAll, nil, nil), func(c *Caller) {
			c.Key.Permission = op(func(p *store.ObjectPermission) { p.MCPServers = []string{"id-a"}; p.MCPToolsets = []string{"ts-a2"} })
			c.Toolset = "ts-a2"
		}), srvA, "t1", false, RuleToolset},
		{"requested toolset allows its tool", with(caller(permTSA2, nil, nil), func(c *Caller) { c.Toolset = "ts-a2" }), srvA, "t2", true, ""},
		{"requested toolset never widens", with(caller(permTSA2, permB, nil), func(c *Caller) { c.Toolset = "ts-a2" }), srvA, "t2", false, LevelTeam},
		{"requested toolset by name", with(caller(permTSA2, nil, nil), func(c *Caller) { c.Toolset = "alpha-two" }), srvA, "t2", true, ""},
		// admin and allow_all_keys
		{"admin bypasses grants", with(caller(nil, nil, nil), func(c *Caller) { c.Admin = true }), srvB, "t1", true, ""},
		{"admin with requested toolset is narrowed", with(caller(nil, nil, nil), func(c *Caller) { c.Admin = true; c.Toolset = "ts-b1" }), srvA, "t2", false, RuleToolset},
		{"allow_all_keys with no grants", caller(nil, nil, nil), srvAK, "x", true, ""},
		{"allow_all_keys beats narrowing key", caller(permB, nil, nil), srvAK, "x", true, ""},
		{"allow_all_keys still narrowed by toolset", with(caller(permTSA2, nil, nil), func(c *Caller) { c.Toolset = "ts-a2" }), srvAK, "x", false, RuleToolset},
		// server allowed_tools
		{"allowed_tools keeps listed", caller(permAll, nil, nil), srvR, "t1", true, ""},
		{"allowed_tools hides others", caller(permAll, nil, nil), srvR, "t2", false, RuleAllowedTools},
		{"allowed_tools binds admins", with(caller(nil, nil, nil), func(c *Caller) { c.Admin = true }), srvR, "t2", false, RuleAllowedTools},
		// blocked_tools
		{"blocked on key", caller(permBlkT1, nil, nil), srvA, "t1", false, RuleBlockedTools},
		{"blocked on org wins over key grant", caller(permA, nil, permBlkAT2), srvA, "t2", false, RuleBlockedTools},
		{"blocked server-tool form only that server", caller(permAB, nil, permBlkAT2), srvB, "t2", true, ""},
		{"blocked by server id form", caller(permA, op(func(p *store.ObjectPermission) { p.BlockedTools = []string{"id-a-t3"} }), nil), srvA, "t3", false, RuleBlockedTools},
		{"blocked wins over admin", with(caller(permBlkT1, nil, nil), func(c *Caller) { c.Admin = true }), srvB, "t1", false, RuleBlockedTools},
		{"blocked wins over allow_all_keys", caller(permBlkT1, nil, nil), srvAK, "t1", false, RuleBlockedTools},
		{"blocked-only level is empty: inherits", caller(permBlkAT2, permA, nil), srvA, "t1", true, ""},
		// network
		{"internal server, external caller", caller(permAll, nil, nil), srvI, "t1", false, RuleNetwork},
		{"internal server, internal caller", with(caller(permAll, nil, nil), func(c *Caller) { c.Internal = true }), srvI, "t1", true, ""},
		{"internal server, external admin", with(caller(nil, nil, nil), func(c *Caller) { c.Admin = true }), srvI, "t1", false, RuleNetwork},
		{"grants deny before network", caller(permB, nil, nil), srvI, "t1", false, LevelKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pol.Compile(tc.c)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if got := s.Allow(tc.srv, tc.tool); got != tc.want {
				t.Errorf("Allow = %v, want %v", got, tc.want)
			}
			d := s.Explain(tc.srv, tc.tool)
			if d.Allowed != tc.want || d.DeniedBy != tc.deniedBy {
				t.Errorf("Explain = %v denied by %q, want %v denied by %q; chain %+v", d.Allowed, d.DeniedBy, tc.want, tc.deniedBy, d.Chain)
			}
			if !d.Allowed && d.Reason == "" {
				t.Errorf("denial has no reason")
			}
		})
	}
}

func TestCompileToolset(t *testing.T) {
	pol := NewPolicy([]*store.Toolset{tsA2, tsB1})
	tests := []struct {
		name    string
		c       Caller
		wantErr error
	}{
		{"unknown", func() Caller { c := caller(permTSA2, nil, nil); c.Toolset = "nope"; return c }(), ErrUnknownToolset},
		{"not granted", func() Caller { c := caller(permTSA2, nil, nil); c.Toolset = "ts-b1"; return c }(), ErrToolsetNotGranted},
		{"not granted to a whole-server key", func() Caller { c := caller(permAll, nil, nil); c.Toolset = "ts-a2"; return c }(), ErrToolsetNotGranted},
		{"granted by team", func() Caller { c := caller(nil, permTSBoth, nil); c.Toolset = "ts-b1"; return c }(), nil},
		{"granted by org", func() Caller { c := caller(permA, nil, permTSA2); c.Toolset = "alpha-two"; return c }(), nil},
		{"admin may use any", func() Caller { c := caller(nil, nil, nil); c.Admin = true; c.Toolset = "ts-b1"; return c }(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pol.Compile(tc.c)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Compile error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestAllowServer(t *testing.T) {
	pol := NewPolicy([]*store.Toolset{tsA2, tsB1})
	tests := []struct {
		name string
		c    Caller
		srv  *Server
		want bool
	}{
		{"whole grant", caller(permA, nil, nil), srvA, true},
		{"tool permission grant", caller(permA1, nil, nil), srvA, true},
		{"toolset grant", caller(permTSA2, nil, nil), srvA, true},
		{"toolset grant other server", caller(permTSA2, nil, nil), srvB, false},
		{"narrowed away by team", caller(permA, permB, nil), srvA, false},
		{"no grants", caller(nil, nil, nil), srvA, false},
		{"allow all keys", caller(nil, nil, nil), srvAK, true},
		{"requested toolset hides other servers", func() Caller { c := caller(permAll, nil, nil); c.Admin = true; c.Toolset = "ts-a2"; return c }(), srvB, false},
		{"internal-only from outside", caller(permAll, nil, nil), srvI, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pol.Compile(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.AllowServer(tc.srv); got != tc.want {
				t.Errorf("AllowServer = %v, want %v; %+v", got, tc.want, s.Explain(tc.srv, "").Chain)
			}
		})
	}
}

// TestMatrix runs every combination of key x team x org x requested toolset x blocked (on
// each level) x network x admin over every server and tool, and checks Allow, Explain and
// AllowServer against a direct, slow reading of the rule in the package comment.
func TestMatrix(t *testing.T) {
	pol := NewPolicy([]*store.Toolset{tsA2, tsB1})
	perms := []*store.ObjectPermission{nil, permEmpty, permA, permAB, permB, permDev, permA1, permTSA2, permTSBoth, permGhost}
	servers := []*Server{srvA, srvB, srvI, srvAK, srvR}
	tools := []string{"t1", "t2"}
	type block struct {
		level int // 0 key, 1 team, 2 org
		tools []string
	}
	blocks := []block{{}, {0, []string{"t1"}}, {1, []string{"alpha-t2"}}, {2, []string{"t1"}}, {2, []string{"id-b-t2"}}}
	toolsetReqs := []string{"", "ts-a2", "ts-b1"}
	n := 0
	for _, kp := range perms {
		for _, tp := range perms {
			for _, orgp := range perms {
				for _, req := range toolsetReqs {
					for _, blk := range blocks {
						for _, internal := range []bool{false, true} {
							for _, admin := range []bool{false, true} {
								c := caller(kp, tp, orgp)
								if len(blk.tools) > 0 {
									// blocked tools ride on one level, leaving its grants as they are
									l := []*Level{&c.Key, &c.Owner, &c.Org}[blk.level]
									var o store.ObjectPermission
									if l.Permission != nil {
										o = *l.Permission
									}
									o.BlockedTools = blk.tools
									l.Permission = &o
								}
								c.Toolset, c.Internal, c.Admin = req, internal, admin
								s, err := pol.Compile(c)
								wantErr := refToolsetErr(c)
								if (err != nil) != (wantErr != nil) || (err != nil && !errors.Is(err, wantErr)) {
									t.Fatalf("Compile(%s) error %v, want %v", describe(c), err, wantErr)
								}
								if err != nil {
									continue
								}
								for _, srv := range servers {
									n++
									if got, want := s.AllowServer(srv), refAllowServer(c, srv); got != want {
										t.Fatalf("%s on %s: AllowServer = %v, want %v; chain %+v", describe(c), srv.Name, got, want, s.Explain(srv, "").Chain)
									}
									for _, tool := range tools {
										n++
										want := refAllow(c, srv, tool)
										if got := s.Allow(srv, tool); got != want {
											t.Fatalf("%s on %s/%s: Allow = %v, want %v; chain %+v", describe(c), srv.Name, tool, got, want, s.Explain(srv, tool).Chain)
										}
										if got := s.Explain(srv, tool).Allowed; got != want {
											t.Fatalf("%s on %s/%s: Explain = %v, want %v", describe(c), srv.Name, tool, got, want)
										}
										// A tool the subject may use is on a server it can see.
										if want && !s.AllowServer(srv) {
											t.Fatalf("%s: %s/%s allowed on an invisible server", describe(c), srv.Name, tool)
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d decisions checked", n)
}

func describe(c Caller) string {
	return fmt.Sprintf("key=%+v team=%+v org=%+v toolset=%q internal=%v admin=%v", c.Key.Permission, c.Owner.Permission, c.Org.Permission, c.Toolset, c.Internal, c.Admin)
}

var refToolsets = map[string]*store.Toolset{"ts-a2": tsA2, "alpha-two": tsA2, "ts-b1": tsB1, "beta-one": tsB1}

func refEmpty(p *store.ObjectPermission) bool {
	return p == nil || len(p.MCPServers)+len(p.MCPAccessGroups)+len(p.MCPToolPermissions)+len(p.MCPToolsets) == 0
}

func refToolsetErr(c Caller) error {
	if c.Toolset == "" {
		return nil
	}
	ts, ok := refToolsets[c.Toolset]
	if !ok {
		return ErrUnknownToolset
	}
	if c.Admin {
		return nil
	}
	for _, p := range []*store.ObjectPermission{c.Key.Permission, c.Owner.Permission, c.Org.Permission} {
		if p != nil && (slices.Contains(p.MCPToolsets, ts.ID) || slices.Contains(p.MCPToolsets, ts.Name)) {
			return nil
		}
	}
	return ErrToolsetNotGranted
}

func refGrants(p *store.ObjectPermission, srv *Server, tool string) bool {
	names := []string{srv.ID, srv.Name}
	whole := false
	for _, n := range names {
		whole = whole || slices.Contains(p.MCPServers, n)
	}
	for _, g := range srv.AccessGroups {
		whole = whole || slices.Contains(p.MCPAccessGroups, g)
	}
	var tp []string
	listed := false
	for _, n := range names {
		if l, ok := p.MCPToolPermissions[n]; ok && len(l) > 0 {
			tp, listed = l, true
			break
		}
	}
	if whole && !listed {
		return true
	}
	if slices.Contains(tp, tool) {
		return true
	}
	for _, id := range p.MCPToolsets {
		if ts, ok := refToolsets[id]; ok {
			for _, r := range ts.Tools {
				if (r.ServerID == srv.ID || r.ServerID == srv.Name) && r.ToolName == tool {
					return true
				}
			}
		}
	}
	return false
}

// refGrantsServer reports whether a non-empty level grants srv at all: whole, through
// tool permissions, or through one of its toolsets.
func refGrantsServer(p *store.ObjectPermission, srv *Server) bool {
	for _, n := range []string{srv.ID, srv.Name} {
		if slices.Contains(p.MCPServers, n) || len(p.MCPToolPermissions[n]) > 0 {
			return true
		}
	}
	for _, g := range srv.AccessGroups {
		if slices.Contains(p.MCPAccessGroups, g) {
			return true
		}
	}
	for _, id := range p.MCPToolsets {
		if ts, ok := refToolsets[id]; ok {
			for _, r := range ts.Tools {
				if r.ServerID == srv.ID || r.ServerID == srv.Name {
					return true
				}
			}
		}
	}
	return false
}

// refAllowServer: a server is visible when every non-empty level grants it at all (and one
// level is non-empty), or the caller is an admin or the server allows all keys; the
// requested toolset has a tool on it; and the network allows it. Blocked tools and
// allowed_tools do not hide a server.
func refAllowServer(c Caller, srv *Server) bool {
	if !c.Admin && !srv.AllowAllKeys {
		any := false
		for _, p := range []*store.ObjectPermission{c.Key.Permission, c.Owner.Permission, c.Org.Permission} {
			if refEmpty(p) {
				continue
			}
			any = true
			if !refGrantsServer(p, srv) {
				return false
			}
		}
		if !any {
			return false
		}
	}
	if c.Toolset != "" {
		in := false
		for _, r := range refToolsets[c.Toolset].Tools {
			in = in || r.ServerID == srv.ID || r.ServerID == srv.Name
		}
		if !in {
			return false
		}
	}
	return srv.Public || c.Internal
}

func refAllow(c Caller, srv *Server, tool string) bool {
	levels := []*store.ObjectPermission{c.Key.Permission, c.Owner.Permission, c.Org.Permission}
	if !c.Admin && !srv.AllowAllKeys {
		any := false
		for _, p := range levels {
			if refEmpty(p) {
				continue
			}
			any = true
			if !refGrants(p, srv, tool) {
				return false
			}
		}
		if !any {
			return false
		}
	}
	if c.Toolset != "" {
		ts := refToolsets[c.Toolset]
		in := false
		for _, r := range ts.Tools {
			in = in || (r.ServerID == srv.ID || r.ServerID == srv.Name) && r.ToolName == tool
		}
		if !in {
			return false
		}
	}
	if len(srv.AllowedTools) > 0 && !slices.Contains(srv.AllowedTools, tool) {
		return false
	}
	for _, p := range levels {
		if p == nil {
			continue
		}
		for _, b := range p.BlockedTools {
			if b == tool || b == srv.Name+"-"+tool || b == srv.ID+"-"+tool {
				return false
			}
		}
	}
	return srv.Public || c.Internal
}
