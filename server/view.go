package server

import (
	"net/netip"
	"strings"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/policy"
)

// A node's view of the mesh: with a policy, a node sees only the peers it
// may exchange traffic with, and with each the traffic that peer may send
// it. Without one, every node sees every online node and may be sent
// anything.

// view is what one node (the viewer) may see: nil for the admin, and for
// everyone in --open mode, who see everything.
type view struct {
	viewer *node
	policy *policy.Policy
}

// viewOf is the view of the node with the given id ("": none). Callers
// hold r.mu.
func (r *registry) viewOf(nodeID string) view {
	n := r.nodes[nodeID]
	if n == nil || r.policy == nil {
		return view{}
	}
	return view{viewer: n, policy: r.policy}
}

// sees says whether the viewer sees n: itself, and the peers it may
// exchange traffic with either way.
func (v view) sees(n *node) bool {
	return v.viewer == nil || n == v.viewer || v.policy.Visible(v.viewer.match, n.match)
}

// peer is n as the viewer sees it: with what n may send the viewer.
func (v view) peer(n *node) api.Peer {
	p := n.peer()
	if v.viewer == nil || n == v.viewer {
		return p
	}
	allows := v.policy.Allowed(n.match, v.viewer.match)
	p.Filter = &api.PeerFilter{Accept: make([]string, len(allows))}
	for i, a := range allows {
		p.Filter.Accept[i] = a.String()
	}
	return p
}

// current says whether a view the viewer took at version since is still
// good for a delta: neither the policy nor what the viewer matches in it
// changed after since.
func (r *registry) current(v view, since uint64) bool {
	return since >= r.policyFrom && (v.viewer == nil || since >= v.viewer.viewFrom)
}

// setPolicy makes p (nil: none) the mesh's policy. Every node's match is
// recomputed, and every long-poll wakes to a full answer of its new view.
func (r *registry) setPolicy(p *policy.Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policy = p
	for _, n := range r.nodes {
		n.matchKey = ""
		r.rematch(n)
	}
	r.version++
	r.policyFrom = r.version
	if p == nil {
		r.maps.at[r.maps.sum] = r.version // the unfiltered map, from now on
	}
	r.wake()
}

// rematch recomputes what n matches in the policy if its name or tags
// changed, and then marks its view as changed from now. Callers hold r.mu.
func (r *registry) rematch(n *node) {
	key := strings.ToLower(n.NodeName) + " " + joinTags(n.Tags)
	if r.policy == nil || key == n.matchKey {
		return
	}
	n.matchKey = key
	n.match = r.policy.Match(policy.Node{Name: n.NodeName, IP: netip.MustParseAddr(n.VPNIP), Tags: n.Tags})
	n.viewFrom = r.version
}

// currentPolicy is the mesh's policy, nil if none.
func (r *registry) currentPolicy() *policy.Policy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.policy
}
