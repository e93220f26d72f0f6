package federation

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// perCallerUpstreams plays an upstream reached with each caller's own
// credentials: "crm" lists the tools of the principal in ctx, and refuses
// principals that have not authorized it with an *AuthorizationRequiredError.
type perCallerUpstreams struct {
	*fakeUpstreams
	mu     sync.Mutex
	tools  map[string][]string // principal -> tool names
	fetchs map[string]int      // principal -> list fetches
	calls  []string            // "principal tool"
}

const authorizeURL = "https://gw.example/oauth/upstream/connect?server=crm"

func (u *perCallerUpstreams) authorized(ctx context.Context) (string, error) {
	p := testPrincipal(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.tools[p]; !ok {
		return "", &AuthorizationRequiredError{Server: "crm", URL: authorizeURL}
	}
	return p, nil
}

func (u *perCallerUpstreams) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	if server != "crm" {
		return u.fakeUpstreams.ListTools(ctx, server)
	}
	p, err := u.authorized(ctx)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fetchs[p]++
	var out []mcp.Tool
	for _, n := range u.tools[p] {
		out = append(out, mcp.NewTool(n))
	}
	return out, nil
}

func (u *perCallerUpstreams) ListPrompts(ctx context.Context, server string) ([]mcp.Prompt, error) {
	if server != "crm" {
		return u.fakeUpstreams.ListPrompts(ctx, server)
	}
	p, err := u.authorized(ctx)
	if err != nil {
		return nil, err
	}
	return []mcp.Prompt{mcp.NewPrompt("brief_" + p)}, nil
}

func (u *perCallerUpstreams) CallTool(ctx context.Context, server string, req mcp.CallToolRequest, obs *upstream.Observer) (*mcp.CallToolResult, error) {
	if server != "crm" {
		return u.fakeUpstreams.CallTool(ctx, server, req, obs)
	}
	p, err := u.authorized(ctx)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.calls = append(u.calls, p+" "+req.Params.Name)
	u.mu.Unlock()
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("as " + p)}}, nil
}

func (u *perCallerUpstreams) authorize(principal string, tools ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tools[principal] = tools
}

func TestPerCallerServer(t *testing.T) {
	shared := newFake()
	shared.setTools("docs", "search")
	u := &perCallerUpstreams{fakeUpstreams: shared, tools: map[string][]string{}, fetchs: map[string]int{}}
	u.authorize("alice", "contacts", "alice_only")
	u.authorize("bob", "contacts")
	_, ts := newTestFederation(t, u, Config{}, Server{Name: "docs"}, Server{Name: "crm", PerCaller: true})
	ctx := context.Background()

	for _, e := range []era{modern, legacy} {
		t.Run(e.String(), func(t *testing.T) {
			alice := dial(t, ts.URL+"/mcp", e, "alice", nil)
			bob := dial(t, ts.URL+"/mcp", e, "bob", nil)
			if diff := cmp.Diff([]string{"crm-contacts", "crm-alice_only", "docs-search"}, toolNames(listTools(t, alice).Tools)); diff != "" {
				t.Errorf("alice's tools (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"crm-contacts", "docs-search"}, toolNames(listTools(t, bob).Tools)); diff != "" {
				t.Errorf("bob's tools (-want +got):\n%s", diff)
			}
			res, err := callTool(bob, "crm-contacts")
			if err != nil || res.Content[0].(mcp.TextContent).Text != "as bob" {
				t.Errorf("bob calls crm-contacts: %+v, %v", res, err)
			}
			// Names resolve through the caller's own list: alice's tool is unknown to bob.
			if _, err := callTool(bob, "crm-alice_only"); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("bob calls alice's tool: got %v, want not found", err)
			}
			if res, err := callTool(alice, "crm-alice_only"); err != nil || res.Content[0].(mcp.TextContent).Text != "as alice" {
				t.Errorf("alice calls her tool: %+v, %v", res, err)
			}
			pl, err := bob.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "crm-brief_bob" {
				t.Errorf("bob's prompts: %+v, %v", pl, err)
			}

			// carol has not authorized crm: the list leaves it out and says where to go.
			carol := dial(t, ts.URL+"/mcp", e, "carol-"+e.String(), nil)
			lr := listTools(t, carol)
			if diff := cmp.Diff([]string{"docs-search"}, toolNames(lr.Tools)); diff != "" {
				t.Errorf("carol's tools (-want +got):\n%s", diff)
			}
			if lr.Meta == nil || !cmp.Equal(lr.Meta.AdditionalFields[MetaAuthorizationRequired], map[string]any{"crm": authorizeURL}) {
				t.Errorf("carol's list _meta: %+v, want %s naming crm", lr.Meta, MetaAuthorizationRequired)
			}
			if lr.Meta != nil && lr.Meta.AdditionalFields[MetaMissing] != nil {
				t.Errorf("an unauthorized server is not a missing one: %+v", lr.Meta)
			}
			_, err = callTool(carol, "crm-contacts")
			if e == legacy {
				// 2025-11-25: -32042 with a URL elicitation.
				var ure mcp.URLElicitationRequiredError
				if !errors.As(err, &ure) || len(ure.Elicitations) != 1 || ure.Elicitations[0].URL != authorizeURL ||
					ure.Elicitations[0].Mode != mcp.ElicitationModeURL {
					t.Errorf("carol calls crm-contacts: got %v, want -32042 URL elicitation of %s", err, authorizeURL)
				}
			} else if err == nil || !strings.Contains(err.Error(), authorizeURL) {
				t.Errorf("carol calls crm-contacts: got %v, want an error carrying %s", err, authorizeURL)
			}
			// Once she has authorized, her very next list has her tools.
			u.authorize("carol-"+e.String(), "contacts")
			if diff := cmp.Diff([]string{"crm-contacts", "docs-search"}, toolNames(listTools(t, carol).Tools)); diff != "" {
				t.Errorf("carol's tools after authorizing (-want +got):\n%s", diff)
			}
		})
	}

	// Lists are cached per caller: the lists and calls above fetched each
	// caller's tools once, not once per request.
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fetchs["alice"] != 1 || u.fetchs["bob"] != 1 {
		t.Errorf("list fetches per caller: %v, want 1 each (cached)", u.fetchs)
	}
}

func TestPerCallerCacheForgetsOnListChanged(t *testing.T) {
	u := &perCallerUpstreams{fakeUpstreams: newFake(), tools: map[string][]string{}, fetchs: map[string]int{}}
	u.authorize("alice", "contacts")
	f, ts := newTestFederation(t, u, Config{}, Server{Name: "crm", PerCaller: true})
	alice := dial(t, ts.URL+"/mcp", modern, "alice", nil)
	listTools(t, alice)
	u.authorize("alice", "contacts", "deals")
	if got := toolNames(listTools(t, alice).Tools); len(got) != 1 {
		t.Fatalf("cached list: got %v, want the first one", got)
	}
	f.ListChanged("crm", string(mcp.MethodNotificationToolsListChanged))
	if diff := cmp.Diff([]string{"crm-contacts", "crm-deals"}, toolNames(listTools(t, alice).Tools)); diff != "" {
		t.Errorf("after list_changed (-want +got):\n%s", diff)
	}
}

func TestPerCallerCacheIsBounded(t *testing.T) {
	u := &perCallerUpstreams{fakeUpstreams: newFake(), tools: map[string][]string{}, fetchs: map[string]int{}}
	u.authorize("alice", "contacts")
	u.authorize("bob", "contacts")
	_, ts := newTestFederation(t, u, Config{CallerCacheSize: 1}, Server{Name: "crm", PerCaller: true})
	alice := dial(t, ts.URL+"/mcp", modern, "alice", nil)
	bob := dial(t, ts.URL+"/mcp", modern, "bob", nil)
	listTools(t, alice)
	listTools(t, alice) // cached
	listTools(t, bob)   // evicts alice's lists
	listTools(t, alice) // fetched again
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fetchs["alice"] != 2 || u.fetchs["bob"] != 1 {
		t.Errorf("list fetches with room for one caller: %v, want alice 2, bob 1", u.fetchs)
	}
}
