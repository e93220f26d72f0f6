package toolsets

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/toolgate/toolgate/store"
)

// BenchmarkDecision measures a permission decision for a cached key among 10,000 compiled
// keys and 100 servers, as the gateway makes it per tools/call: find the key's compiled
// Subject, find the server, decide. It reports the p50 of single decisions as p50-ns.
func BenchmarkDecision(b *testing.B) {
	const nKeys, nServers = 10000, 100
	servers := make(map[string]*Server, nServers)
	var toolsets []*store.Toolset
	for i := range nServers {
		name := fmt.Sprintf("srv%d", i)
		servers[name] = &Server{ID: "id-" + name, Name: name, AccessGroups: []string{fmt.Sprintf("g%d", i%10)}, Public: i%2 == 0}
		if i%10 == 0 {
			ts := &store.Toolset{ID: fmt.Sprintf("ts%d", i), Name: fmt.Sprintf("toolset%d", i)}
			for j := range 10 {
				ts.Tools = append(ts.Tools, store.ToolRef{ServerID: "id-" + name, ToolName: fmt.Sprintf("tool%d", j)})
			}
			toolsets = append(toolsets, ts)
		}
	}
	pol := NewPolicy(toolsets)
	teamPerm := &store.ObjectPermission{MCPAccessGroups: []string{"g0", "g1", "g2"}, MCPToolsets: []string{"ts0", "ts10"}}
	orgPerm := &store.ObjectPermission{BlockedTools: []string{"drop_table"}}
	cache := make(map[string]*Subject, nKeys)
	hashes := make([]string, nKeys)
	for i := range nKeys {
		kp := &store.ObjectPermission{
			MCPServers:         []string{fmt.Sprintf("srv%d", i%nServers), fmt.Sprintf("srv%d", (i+1)%nServers)},
			MCPToolPermissions: map[string][]string{fmt.Sprintf("srv%d", i%nServers): {"tool1", "tool2"}},
		}
		s, err := pol.Compile(Caller{
			Key:      Level{Name: LevelKey, ID: fmt.Sprint(i), Permission: kp},
			Owner:    Level{Name: LevelTeam, ID: "team", Permission: teamPerm},
			Org:      Level{Name: LevelOrg, ID: "org", Permission: orgPerm},
			Internal: i%3 == 0,
		})
		if err != nil {
			b.Fatal(err)
		}
		hashes[i] = fmt.Sprintf("%064x", i)
		cache[hashes[i]] = s
	}
	names := make([]string, 0, nServers)
	for n := range servers {
		names = append(names, n)
	}
	slices.Sort(names)

	samples := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		s := cache[hashes[(i*7919)%nKeys]]
		srv := servers[names[i%nServers]]
		_ = s.Allow(srv, "tool1")
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	b.StopTimer()
	if len(samples) > 0 {
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	}
}

// BenchmarkListFilter measures filtering a tools/list of 50 servers x 10 tools for a
// caller granted one 10-tool toolset.
func BenchmarkListFilter(b *testing.B) {
	var servers []*Server
	ts := &store.Toolset{ID: "ts", Name: "ten"}
	for i := range 50 {
		servers = append(servers, &Server{ID: fmt.Sprintf("id%d", i), Name: fmt.Sprintf("s%d", i), Public: true})
	}
	for j := range 10 {
		ts.Tools = append(ts.Tools, store.ToolRef{ServerID: fmt.Sprintf("id%d", j*5), ToolName: fmt.Sprintf("t%d", j)})
	}
	tools := make([]string, 10)
	for j := range tools {
		tools[j] = fmt.Sprintf("t%d", j)
	}
	s, err := NewPolicy([]*store.Toolset{ts}).Compile(Caller{Key: Level{Name: LevelKey, Permission: &store.ObjectPermission{MCPToolsets: []string{"ts"}}}, Toolset: "ts"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		n := 0
		for _, srv := range servers {
			if s.AllowServer(srv) {
				n += len(s.Tools(srv, tools))
			}
		}
		if n != 10 { // tool tj is granted on server j*5 only
			b.Fatalf("visible tools = %d", n)
		}
	}
}
