package filter

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSources(t *testing.T) {
	addr := netip.MustParseAddr
	rules := Rules{
		addr("10.99.0.3"):        {{TCP, PortRange{22, 22}}, {Any, PortRange{20, 23}}, {TCP, PortRange{24, 30}}, {UDP, PortRange{100, 200}}, {UDP, PortRange{150, 160}}},
		addr("10.99.0.2"):        {{ICMP, AllPorts}, {Proto(47), AllPorts}, {Proto(47), PortRange{1, 1}}, {TCP, PortRange{65535, 65535}}, {TCP, PortRange{0, 65534}}},
		addr("::ffff:10.99.0.4"): {{UDP, PortRange{53, 53}}},
		addr("fd00::1"):          {{Any, AllPorts}},
		addr("10.99.0.5"):        nil,
	}
	want := []Source{
		{Addr: addr("10.99.0.2"), TCP: []PortRange{AllPorts}, ICMP: true, Protocols: []Proto{47}},
		{Addr: addr("10.99.0.3"), TCP: []PortRange{{20, 30}}, UDP: []PortRange{{20, 23}, {100, 200}}, ICMP: true},
		{Addr: addr("10.99.0.4"), UDP: []PortRange{{53, 53}}},
		{Addr: addr("10.99.0.5")},
	}
	if d := cmp.Diff(want, rules.Sources(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Sources (-want +got):\n%s", d)
	}
}
