package node

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/filter"
)

func TestFilterRules(t *testing.T) {
	tcp22 := filter.Allow{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 22}}
	peer := func(ip string, accept ...string) api.Peer {
		p := api.Peer{NodeID: ip, NodeName: ip, VPNIP: ip}
		if accept != nil {
			p.Filter = &api.PeerFilter{Accept: accept[1:]} // accept[0] marks "has a filter"
		}
		return p
	}
	a, b := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	for _, c := range []struct {
		name  string
		peers []api.Peer
		want  filter.Rules
	}{
		{"no policy", []api.Peer{peer("10.99.0.1"), peer("10.99.0.2")}, nil},
		{"a policy", []api.Peer{peer("10.99.0.1", "", "tcp:22"), peer("10.99.0.2", "")},
			filter.Rules{a: {agentAllow, tcp22}, b: {agentAllow}}},
		{"an entry this version cannot read is left out", []api.Peer{peer("10.99.0.1", "", "sctp:1", "tcp:22")},
			filter.Rules{a: {agentAllow, tcp22}}},
		{"a peer sent without a filter, among filtered ones", []api.Peer{peer("10.99.0.1", ""), peer("10.99.0.2")},
			filter.Rules{a: {agentAllow}, b: acceptAll}},
	} {
		d := &Daemon{peers: map[string]api.Peer{}, log: slog.New(slog.DiscardHandler)}
		for _, p := range c.peers {
			d.peers[p.NodeID] = p
		}
		if diff := cmp.Diff(c.want, d.filterRules()); diff != "" {
			t.Errorf("%s: rules (-want +got):\n%s", c.name, diff)
		}
	}
}
