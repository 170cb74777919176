package server

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/policy"
)

// registryOf registers nodes n1, n2, n3 (their ids are their names).
func registryOf(t *testing.T, names ...string) *registry {
	t.Helper()
	reg := newTestRegistry(t)
	for _, n := range names {
		req := api.RegisterRequest{NodeID: n, NodeName: n, WGPublicKey: "k" + n, Port: 1}
		if _, err := reg.register(context.Background(), enrolment{req: req}); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func mustPolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seen is a view's peers, each as NAME or NAME=ACCEPT,ACCEPT.
func seen(resp api.PeersResponse) []string {
	var out []string
	for _, p := range resp.Peers {
		s := p.NodeName
		if p.Filter != nil {
			s += "=" + joinTags(p.Filter.Accept)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestViews: with a policy, each node sees only the peers it may exchange
// traffic with, each with what it may send; the admin sees everything.
func TestViews(t *testing.T) {
	reg := registryOf(t, "n1", "n2", "n3")
	reg.setPolicy(mustPolicy(t, `{"acls": [{"action": "accept", "src": ["n1"], "dst": ["n2:22"]}]}`))
	for _, c := range []struct {
		viewer string
		want   []string
	}{
		{"n1", []string{"n1", "n2="}},     // n2 may send n1 nothing but replies
		{"n2", []string{"n1=*:22", "n2"}}, // n1 may reach n2's port 22
		{"n3", []string{"n3"}},            // n3 exchanges nothing with anyone
		{"", []string{"n1", "n2", "n3"}},  // the admin
	} {
		resp, _ := reg.peers("0", c.viewer)
		if d := cmp.Diff(c.want, seen(resp)); d != "" {
			t.Errorf("%q's view (-want +got):\n%s", c.viewer, d)
		}
	}
	if st := reg.status("v", "n3"); len(st.Nodes) != 1 {
		t.Errorf("n3's /status lists %d nodes, want itself only", len(st.Nodes))
	}
}

// TestViewChanges: a policy change and a retag reach long-polls as they
// should: the policy as a full answer to everyone, a retag of n3 as a
// delta to the others and a full answer to n3.
func TestViewChanges(t *testing.T) {
	reg := registryOf(t, "n1", "n2", "n3")
	start := map[string]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		resp, _ := reg.peers("0", n)
		start[n] = resp.Version
	}
	_, wait := reg.peers(start["n1"], "n1")
	reg.setPolicy(mustPolicy(t, `{"tagOwners": {"tag:web": []}, "acls": [{"action": "accept", "src": ["n1"], "dst": ["tag:web:80"]}]}`))
	select {
	case <-wait:
	default:
		t.Fatal("a policy change did not wake a long-poll")
	}
	resp, _ := reg.peers(start["n1"], "n1")
	if !resp.Full || !slices.Equal(seen(resp), []string{"n1"}) {
		t.Fatalf("n1 after the policy: full %v, %q; want a full answer of itself alone", resp.Full, seen(resp))
	}
	v1 := resp.Version
	v3 := mustFull(t, reg, start["n3"], "n3")
	reg.mu.Lock()
	reg.retag(reg.nodes["n3"], []string{"tag:web"})
	reg.mu.Unlock()
	if resp, _ := reg.peers(v1, "n1"); resp.Full || !slices.Equal(seen(resp), []string{"n3="}) {
		t.Errorf("n1 after n3 was tagged: full %v, %q; want a delta of n3", resp.Full, seen(resp))
	}
	if resp, _ := reg.peers(v3, "n3"); !resp.Full || !slices.Equal(seen(resp), []string{"n1=*:80", "n3"}) {
		t.Errorf("n3 after its tag: full %v, %q; want a full answer with n1", resp.Full, seen(resp))
	}
	if resp, _ := reg.peers(v1, "n2"); !slices.Equal(resp.Removed, []string{"n3"}) || len(resp.Peers) != 0 {
		t.Errorf("n2 after n3 was tagged: %+v; want n3 removed (n2 does not see it)", resp)
	}
}

func mustFull(t *testing.T, reg *registry, since, viewer string) string {
	t.Helper()
	resp, _ := reg.peers(since, viewer)
	if !resp.Full {
		t.Fatalf("%s after the policy: not a full answer", viewer)
	}
	return resp.Version
}
