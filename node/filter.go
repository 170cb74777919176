package node

import (
	"net/netip"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/filter"
)

// agentAllow lets every peer reach this node's agent, whatever the policy:
// messages and pairing are wire's own, authenticated per peer, and both
// ways by nature (a pairing needs each side's answer).
var agentAllow = filter.Allow{Proto: filter.TCP, Ports: filter.PortRange{First: agent.Port, Last: agent.Port}}

// acceptAll is what a peer without a filter may send: the mesh has no
// policy.
var acceptAll = []filter.Allow{{Proto: filter.Any, Ports: filter.AllPorts}}

// filterRules is what this node accepts from its peers, as the server's
// policy says: nil (everything) if no peer comes with a filter. Callers
// hold d.mu.
func (d *Daemon) filterRules() filter.Rules {
	var rules filter.Rules
	for _, p := range d.peers {
		if p.Filter == nil {
			continue
		}
		if rules == nil {
			rules = filter.Rules{}
		}
		if ip, err := netip.ParseAddr(p.VPNIP); err == nil {
			rules[ip] = d.accepts(p)
		}
	}
	if rules == nil {
		return nil
	}
	for _, p := range d.peers { // a peer the server sent without one
		if ip, err := netip.ParseAddr(p.VPNIP); err == nil && p.Filter == nil {
			rules[ip] = acceptAll
		}
	}
	return rules
}

// accepts is what peer p may send: what the server says, and the agent.
// An entry this version cannot read is left out: the filter fails closed.
func (d *Daemon) accepts(p api.Peer) []filter.Allow {
	out := []filter.Allow{agentAllow}
	for _, s := range p.Filter.Accept {
		a, err := filter.ParseAllow(s)
		if err != nil {
			d.log.Warn("ignoring what a peer may send", "peer", p.NodeName, "err", err)
			continue
		}
		out = append(out, a)
	}
	return out
}
