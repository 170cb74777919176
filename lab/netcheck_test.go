//go:build linux

package lab_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/lab"
)

// TestNetcheck: wire netcheck tells a cone NAT (one public address for
// both of the server's UDP ports) from a symmetric one (an address per
// destination), and says what each means; behind a router that drops all
// UDP it says UDP is blocked, and fails.
func TestNetcheck(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATSymmetric)
	cone := m.up(l.NodeBehind(l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone), "cone", "192.168.1.10"), "cone")
	sym := m.up(l.NodeBehind(r2, "sym", "192.168.2.10"), "sym")
	for _, tc := range []struct {
		n       *node
		nat     string
		public  string
		verdict string
	}{
		{cone, diag.NATIndependent, "203.0.113.11:", "hole punching"},
		{sym, diag.NATSymmetric, "203.0.113.12:", "through the relay"},
	} {
		out, err := wire(tc.n.ns, "netcheck", "--json", "--state-dir", tc.n.dir)
		var nc diag.Netcheck
		if err != nil || json.Unmarshal([]byte(out), &nc) != nil {
			t.Errorf("%s: wire netcheck: %v\n%s", tc.n.name, err, out)
			continue
		}
		if nc.NAT != tc.nat || !strings.HasPrefix(nc.STUN.Mapped, tc.public) || !strings.HasPrefix(nc.Relay.Mapped, tc.public) || !strings.Contains(nc.Verdict, tc.verdict) {
			t.Errorf("%s: netcheck %+v; want a %s NAT at %s…", tc.n.name, nc, tc.nat, tc.public)
		}
	}

	// UDP blocked at sym's router: HTTPS still answers, UDP does not.
	r2.DropUDP()
	out, err := wire(sym.ns, "netcheck", "--state-dir", sym.dir)
	if err == nil || !strings.Contains(err.Error(), "no UDP answer") || !strings.Contains(out, "UDP to the server is blocked") {
		t.Errorf("wire netcheck behind a router that drops UDP: %v\n%s", err, out)
	}
}
