//go:build linux

package lab_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// pathOf is the path a node's `wire status --json` shows to a peer.
func pathOf(n *node, peer string) (string, error) {
	st, err := n.status()
	if err != nil {
		return "", err
	}
	p, ok := st.peer(peer)
	if !ok {
		return "", fmt.Errorf("%s does not list %s", n.name, peer)
	}
	return p.Path, nil
}

// waitPaths waits until every listed pair shows the wanted path, both ways.
func waitPaths(t *testing.T, timeout time.Duration, want map[[2]*node]string) {
	t.Helper()
	err := lab.Poll(timeout, 250*time.Millisecond, func() error {
		var bad []string
		for pair, path := range want {
			for _, ab := range [][2]*node{pair, {pair[1], pair[0]}} {
				got, err := pathOf(ab[0], ab[1].name)
				if err != nil || got != path {
					bad = append(bad, fmt.Sprintf("%s→%s: %s (%v), want %s", ab[0].name, ab[1].name, got, err, path))
				}
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("paths: %v", err)
	}
}

// TestRelayTopologies: behind symmetric NATs hole punching cannot work, so
// those pairs use the relay; a pair of cone NATs in the same mesh stays
// direct. Every pair pings.
func TestRelayTopologies(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATSymmetric)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	r3 := l.Router("r3", "203.0.113.13", "192.168.3.0/24", lab.NATSymmetric)
	r4 := l.Router("r4", "203.0.113.14", "192.168.4.0/24", lab.NATCone)
	sym1 := m.up(l.NodeBehind(r1, "sym1", "192.168.1.10"), "sym1")
	cone2 := m.up(l.NodeBehind(r2, "cone2", "192.168.2.10"), "cone2")
	sym3 := m.up(l.NodeBehind(r3, "sym3", "192.168.3.10"), "sym3")
	cone4 := m.up(l.NodeBehind(r4, "cone4", "192.168.4.10"), "cone4")
	took := m.waitPairs(30*time.Second, sym1, cone2, sym3, cone4)
	t.Logf("every pair pings %v after the last node is up", took)
	waitPaths(t, 15*time.Second, map[[2]*node]string{
		{sym1, cone2}:  "relay", // symmetric and cone
		{sym1, sym3}:   "relay", // both symmetric
		{sym3, cone4}:  "relay",
		{cone2, cone4}: "direct",
	})
}

// TestRelayToDirect: a relayed pair whose NAT becomes friendly moves to
// the direct path within 30 s, and the ping stream keeps flowing.
func TestRelayToDirect(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATSymmetric)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	m.waitPairs(30*time.Second, n1, n2)
	waitPaths(t, 15*time.Second, map[[2]*node]string{{n1, n2}: "relay"})
	// wire status says why.
	if out, err := wire(n2.ns, "status", "--state-dir", n2.dir); err != nil || !strings.Contains(out, "n1 is on the relay: ") || !strings.Contains(out, "direct probes to 203.0.113.11:") {
		t.Errorf("n2's wire status does not say why n1 is on the relay: %v\n%s", err, out)
	}

	// A ping every 100 ms for 40 s while r1 turns into a cone NAT.
	stream := lab.Start(t, n1.ns, "pingstream", "ping", "-n", "-i", "0.1", "-c", "400", "-W", "1", n2.vpnIP)
	time.Sleep(2 * time.Second)
	swapped := time.Now()
	r1.SetKind(lab.NATCone)
	// The WireGuard port's old random mappings go; the relay's flow (from
	// another port) is left alone, so what is measured is the move itself.
	if out, err := lab.Run(r1.NS, "conntrack", "-D", "-p", "udp", "--orig-port-src", "51820"); err != nil && !strings.Contains(out, "deleted") {
		t.Fatalf("conntrack -D: %v: %s", err, out)
	}
	waitPaths(t, 30*time.Second, map[[2]*node]string{{n1, n2}: "direct"})
	t.Logf("relay-to-direct: %.1fs after the NAT became friendly", time.Since(swapped).Seconds())
	summary, err := stream.WaitLine("received", 60*time.Second)
	if err != nil {
		t.Fatalf("ping stream: %v\n%s", err, stream.Tail(5))
	}
	if got := pingReceived.FindStringSubmatch(summary); got == nil || atoi(got[1]) < 380 {
		t.Errorf("the ping stream lost more than 5%% while the pair moved to direct: %s", summary)
	}
	t.Logf("ping stream across the move: %s", summary)
}

// TestRelayServerKilled: killing the relay (the coordination server) while
// a relayed pair talks makes the path down; when the server returns, the
// pair recovers without restarting either node.
func TestRelayServerKilled(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATSymmetric)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATSymmetric)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	m.waitPairs(30*time.Second, n1, n2)
	waitPaths(t, 15*time.Second, map[[2]*node]string{{n1, n2}: "relay"})

	m.srv.Kill()
	down := time.Now()
	waitPaths(t, 20*time.Second, map[[2]*node]string{{n1, n2}: "none"})
	t.Logf("path reported down %.1fs after the relay died", time.Since(down).Seconds())

	m.startServer()
	back := time.Now()
	waitPaths(t, 30*time.Second, map[[2]*node]string{{n1, n2}: "relay"})
	m.waitPairs(10*time.Second, n1, n2)
	t.Logf("relayed pair back %.1fs after the server returned", time.Since(back).Seconds())
}

// TestRelayOverTCP: behind a router that drops all UDP but DNS, a node
// reaches the relay over TCP (its HTTPS connection to the server), and
// every pair with it pings, on the path relay-tcp both ways; the other
// pair stays direct. When UDP works again the node moves back to UDP, and
// its pairs on to direct.
func TestRelayOverTCP(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	r3 := l.Router("r3", "203.0.113.13", "192.168.3.0/24", lab.NATCone)
	r2.DropUDP()
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	n3 := m.up(l.NodeBehind(r3, "n3", "192.168.3.10"), "n3")
	t.Logf("every pair pings %v after the last node is up", m.waitPairs(30*time.Second, n1, n2, n3).Round(time.Millisecond))
	waitPaths(t, 15*time.Second, map[[2]*node]string{{n1, n2}: "relay-tcp", {n3, n2}: "relay-tcp", {n1, n3}: "direct"})
	if st := relayOf(t, n2); st != "up over tcp" {
		t.Errorf("n2's relay: %q, want up over tcp", st)
	}
	if st := relayOf(t, n1); st != "up" {
		t.Errorf("n1's relay: %q, want up", st)
	}

	r2.AllowUDP()
	allowed := time.Now()
	err := lab.Poll(40*time.Second, 500*time.Millisecond, func() error {
		if st := relayOf(t, n2); st != "up" {
			return fmt.Errorf("n2's relay is %q", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after UDP came back: %v", err)
	}
	t.Logf("n2 back on the relay over UDP %v after UDP was let through", time.Since(allowed).Round(time.Millisecond))
	waitPaths(t, 30*time.Second, map[[2]*node]string{{n1, n2}: "direct", {n3, n2}: "direct"})
	m.waitPairs(meshTimeout, n1, n2, n3)
}

// relayOf is the relay state n's wire status --json shows.
func relayOf(t *testing.T, n *node) string {
	t.Helper()
	out, err := wire(n.ns, "status", "--json", "--state-dir", n.dir)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Relay string `json:"relay"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s: wire status --json: %v\n%s", n.name, err, out)
	}
	return st.Relay
}
