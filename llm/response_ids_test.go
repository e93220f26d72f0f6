package llm

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzResponseIDs: an ID reads back as what it was issued for, for its owner only; reading
// any string never panics; renaming the ID of any JSON object leaves valid JSON whose
// other fields are unchanged.
func FuzzResponseIDs(f *testing.F) {
	ids := newResponseIDs([]byte("k"))
	f.Add("key:k1", "dep-1", "resp_abc", "resp_tg1_ZGVwLTEAcmVzcF9hYmM", `{"id":"resp_1","object":"response"}`)
	f.Add("", "d", "\x00", "resp_tg1_", `{"type":"response.created","response":{"id":"r"}}`)
	f.Add("admin", "d\x00e", "u", "resp_tg1_====", `{"id":1,"response":[]}`)
	f.Fuzz(func(t *testing.T, owner, dep, up, id, obj string) {
		if dep != "" && up != "" && !strings.Contains(dep, "\x00") {
			s := ids.issue(owner, dep, up)
			if d, u, ok := ids.read(owner, s); !ok || d != dep || u != up {
				t.Fatalf("read(issue(%q, %q, %q)) = %q, %q, %v", owner, dep, up, d, u, ok)
			}
			if _, _, ok := ids.read(owner+"x", s); ok {
				t.Fatalf("ID of %q read as another owner's", owner)
			}
		}
		if d, u, ok := ids.read(owner, id); ok && (d == "" || u == "") {
			t.Fatalf("read(%q) = %q, %q: an empty part accepted", id, d, u)
		}
		rename := func(string) string { return "new" }
		for _, out := range [][]byte{withID([]byte(obj), rename), withResponseID([]byte(obj), rename)} {
			if json.Valid([]byte(obj)) && !json.Valid(out) {
				t.Fatalf("renamed %q to invalid %q", obj, out)
			}
		}
		var before, after map[string]json.RawMessage
		if json.Unmarshal([]byte(obj), &before) == nil && json.Unmarshal(withID([]byte(obj), rename), &after) == nil {
			var old string
			if json.Unmarshal(before["id"], &old) == nil && old != "" && string(after["id"]) != `"new"` {
				t.Fatalf("withID(%q): id %s, want \"new\"", obj, after["id"])
			}
			for k, v := range before {
				if k != "id" && string(after[k]) != string(v) {
					t.Fatalf("withID(%q) changed %s: %s", obj, k, after[k])
				}
			}
		}
	})
}

// TestResponseOwners: callers that share no key, user or team never share response IDs;
// an admin token without them does not share with a non-admin one.
func TestResponseOwners(t *testing.T) {
	ids := newResponseIDs([]byte("k"))
	callers := []*Caller{{KeyID: "k1"}, {KeyID: "k2", UserID: "u1"}, {UserID: "u1"}, {UserID: "u2"}, {TeamID: "t1"}, {Admin: true}, {}}
	for i, a := range callers {
		id := ids.issue(a.owner(), "d", "resp_1")
		for j, b := range callers {
			if _, _, ok := ids.read(b.owner(), id); ok != (i == j) {
				t.Errorf("caller %+v reading caller %+v's ID: ok %v", b, a, ok)
			}
		}
	}
}
