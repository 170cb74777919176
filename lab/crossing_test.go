//go:build linux

package lab_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// denyAll is a policy that lets no node reach another: every node loses
// its peers.
const denyAll = `{"acls": []}`

// pathDelay is the one-way delay between the nodes of
// TestCrossedHandshakesDelayed: more than the time between the two ends
// hearing of each other from the server, so that their first handshake
// initiations are both on the way before either arrives.
const pathDelay = 100 * time.Millisecond

// TestCrossedHandshakesDelayed: two NATed nodes 100 ms apart lose each
// other to a policy and get each other back when it is removed, four
// times. Told at once, both ends initiate at once, and the initiations
// cross; the engines resolve that (wg/crossing.go), so that in every round
// the handshake completes well before WireGuard's own retry, 5 s after
// its first initiation, would have it. The delay needs the kernel's netem
// qdisc, which the VM lab (lab/vmlab) has, and where it runs this on the
// kernel engine, whose log must show that it saw crossings and resolved
// them: otherwise the test proved nothing.
func TestCrossedHandshakesDelayed(t *testing.T) {
	m := newMesh(t)
	r1 := m.lab.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := m.lab.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	debug := append(nodeFlags(), "--debug")
	n1 := m.joinEngine(m.lab.NodeBehind(r1, "n1", "192.168.1.10"), "n1", debug...)
	n2 := m.joinEngine(m.lab.NodeBehind(r2, "n2", "192.168.2.10"), "n2", debug...)
	m.waitUp(n1)
	m.waitUp(n2)
	m.waitPairs(meshTimeout, n1, n2)
	for _, n := range []*node{n1, n2} {
		out, err := lab.Run(n.ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", pathDelay.String())
		if err != nil && !kernelWireGuard() && strings.Contains(out+err.Error(), "unknown") {
			t.Skip("this kernel has no netem qdisc (sch_netem): lab/vmlab runs this in its VM")
		}
		if err != nil {
			t.Fatalf("delaying %s's packets: %v %s", n.name, err, out)
		}
	}
	const rounds, within = 4, 3 * time.Second
	var took []string
	for i := range rounds {
		m.setPolicy(denyAll)
		waitPeers(t, n1)
		waitPeers(t, n2)
		if _, err := wire(m.srvNS, "server", "policy", "remove", "--state-dir", m.srvDir); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		err := lab.Poll(30*time.Second, 50*time.Millisecond, func() error {
			for _, n := range []*node{n1, n2} {
				if err := handshaken(n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
		d := time.Since(removed)
		took = append(took, d.Round(10*time.Millisecond).String())
		if d > within {
			t.Errorf("round %d: the pair's handshake completed %v after the policy was removed; want within %v, before WireGuard's retry", i+1, d.Round(time.Millisecond), within)
		}
		m.waitPairs(meshTimeout, n1, n2)
		if st, err := n1.status(); err != nil {
			t.Fatal(err)
		} else if p, _ := st.peer("n2"); p.Path != "direct" {
			t.Fatalf("round %d: n1's path to n2 is %q, want direct: the relay has crossings of its own (wg/proxy.go)", i+1, p.Path)
		}
	}
	t.Logf("the pair's handshake completed %s after the policy was removed", strings.Join(took, ", "))
	if kernelWireGuard() {
		const resolved = "crossed handshakes: WireGuard initiates again"
		if c := strings.Count(n1.proc.Output(), resolved) + strings.Count(n2.proc.Output(), resolved); c == 0 {
			t.Errorf("neither node logged %q in %d rounds: the initiations did not cross, and the test tested nothing", resolved, rounds)
		} else {
			t.Logf("%d crossings resolved in %d rounds", c, rounds)
		}
	}
}

// handshaken says why n's WireGuard has no completed handshake with a
// peer, or nil if it has one with each.
func handshaken(n *node) error {
	out, err := lab.Run(n.ns, "wg", "show", n.iface, "latest-handshakes")
	if err != nil {
		return fmt.Errorf("wg show %s latest-handshakes in %s: %v %s", n.iface, n.name, err, out)
	}
	lines := strings.Fields(out)
	if len(lines) == 0 {
		return fmt.Errorf("%s has no peer", n.name)
	}
	for i := 1; i < len(lines); i += 2 {
		if lines[i] == "0" {
			return fmt.Errorf("%s has no handshake with %s", n.name, lines[i-1])
		}
	}
	return nil
}
