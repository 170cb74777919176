package server

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/policy"
)

// The digest follows every change peers see, whichever way it comes:
// it always equals one computed from scratch.
func TestDigestFollowsEveryChange(t *testing.T) {
	reg := newTestRegistry(t)
	now := time.Now()
	reg.now = func() time.Time { return now }
	check := func(what string) {
		t.Helper()
		reg.mu.Lock()
		defer reg.mu.Unlock()
		var want digest
		for _, n := range reg.nodes {
			if n.online {
				want = want.add(reg.maps.hash(n))
			}
		}
		if reg.maps.sum != want {
			t.Fatalf("after %s: digest %s, from scratch %s", what, reg.maps.sum, want)
		}
	}
	ctx := context.Background()
	req := func(i, port int) api.RegisterRequest {
		id := fmt.Sprint("n", i)
		return api.RegisterRequest{NodeID: id, NodeName: id, WGPublicKey: "k" + id, Port: port}
	}
	for i := range 5 {
		if _, err := reg.register(ctx, enrolment{req: req(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	check("enrolments")
	reg.register(ctx, enrolment{req: req(1, 2)})
	check("a heartbeat that moves")
	reg.offline(reg.nodes["n2"])
	check("going down")
	reg.register(ctx, enrolment{req: req(2, 1)})
	check("coming back")
	now = now.Add(api.Online)
	reg.register(ctx, enrolment{req: req(3, 1)})
	reg.sweep()
	check("the sweep")
	reg.alive(reg.nodes["n4"])
	check("a poll")
	recs, err := reg.store.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if recs[i].NodeID == "n0" {
			recs[i].NodeName, recs[i].LastSeen = "renamed", now
		}
	}
	reg.apply(recs[1:], []string{recs[0].NodeID}, reg.mark())
	check("a read of the store's changes")
	reg.mu.Lock()
	reg.remove(reg.nodes["n1"])
	reg.mu.Unlock()
	check("a removal")
}

// Without the servers' key, or with a policy, there is no placing a
// version by its digest.
func TestDigestNeedsKeyAndNoPolicy(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	prefix := netip.MustParsePrefix("10.99.0.0/16")
	a := newRegistry(store, prefix, time.Now, []byte("key one"))
	req := api.RegisterRequest{NodeID: "a", NodeName: "a", WGPublicKey: "k", Port: 1}
	if _, err := a.register(context.Background(), enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	held, _ := a.peers("0", "")
	recs, _ := store.Nodes(context.Background())
	load := func(key []byte) *registry {
		r := newRegistry(store, prefix, time.Now, key)
		if err := r.load(recs); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if resp, _ := load([]byte("key one")).peers(held.Version, ""); resp.Full {
		t.Errorf("same key: %+v, want a delta", resp)
	}
	if resp, _ := load([]byte("key two")).peers(held.Version, ""); !resp.Full {
		t.Errorf("another key: %+v, want the whole map", resp)
	}
	r := load([]byte("key one"))
	pol, err := policy.Parse([]byte(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r.setPolicy(pol)
	if resp, _ := r.peers(held.Version, ""); !resp.Full {
		t.Errorf("with a policy: %+v, want the whole map", resp)
	}
	if resp, _ := r.peers("0", ""); strings.Count(resp.Version, ".") != 1 {
		t.Errorf("with a policy the version %q carries a digest", resp.Version)
	}
	r.setPolicy(nil)
	if resp, _ := r.peers(held.Version, ""); resp.Full {
		t.Errorf("the policy removed: %+v, want a delta from the map held", resp)
	}
}
