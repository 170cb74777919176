package server

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/api"
)

// Full answers are encoded once per version and shared by every node that
// sees the whole mesh; they say what the uncached answer says; a change
// makes a new one; a node under a policy gets its own view instead.
func TestSharedFullAnswer(t *testing.T) {
	reg := registryOf(t, "n1", "n2", "n3")
	a, ok := reg.sharedFull("0", "n1")
	b, _ := reg.sharedFull("stale.7", "n2")
	if !ok || &a[0] != &b[0] {
		t.Fatal("two full answers at one version were not the same bytes")
	}
	var got api.PeersResponse
	if err := json.Unmarshal(a, &got); err != nil {
		t.Fatal(err)
	}
	want, _ := reg.peers("0", "n1")
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the shared answer (-uncached +shared):\n%s", d)
	}
	if _, ok := reg.sharedFull(want.Version, "n1"); ok {
		t.Error("a poll from the current version got a full answer")
	}
	reg.mu.Lock()
	reg.retag(reg.nodes["n3"], []string{"tag:x"})
	reg.mu.Unlock()
	if c, _ := reg.sharedFull("0", "n1"); &c[0] == &a[0] {
		t.Error("after a change, the old full answer was shared")
	}
	reg.setPolicy(mustPolicy(t, `{"acls": [{"action": "accept", "src": ["n1"], "dst": ["n2:22"]}]}`))
	if _, ok := reg.sharedFull("0", "n1"); ok {
		t.Error("a node under a policy got the shared, unfiltered answer")
	}
	if _, ok := reg.sharedFull("0", ""); !ok {
		t.Error("the admin, who sees everything, did not get the shared answer")
	}
}
