//go:build linux

package lab_test

import (
	"testing"
	"time"

	"github.com/wire-mesh/wire/internal/pgtest"
	"github.com/wire-mesh/wire/lab"
	"github.com/wire-mesh/wire/server/servertest"
)

// Two replicas of the coordination server on one PostgreSQL, each its
// own host; nodes know both. Nodes that talk to different replicas and
// cannot punch through reach each other over the replicas' relays. When
// the first replica is SIGKILLed, direct tunnels carry on unbroken,
// every node moves to the second within seconds, relayed pairs move to its
// relay, and a node that joins then is seen by all.
func TestReplicaFailover(t *testing.T) {
	requireWire(t)
	pg := pgtest.Start(t)
	store := pg.NewDB()
	l := lab.New(t)
	const ip1, ip2 = "203.0.113.1", "203.0.113.2"
	url1, url2 := "https://"+ip1+":8787", "https://"+ip2+":8787"
	ns1, ns2 := l.Host("srv1", ip1), l.Host("srv2", ip2)
	dir1, dir2 := t.TempDir(), t.TempDir()
	start := func(ns *lab.NS, name, dir, ip, peer string) *lab.Proc {
		p := lab.Start(t, ns, name, wireBin, "server", "--state-dir", dir, "--store", store,
			"--listen", ip+":8787", "--relay-peer", peer+":8789")
		if _, err := p.WaitLine("HTTP  https://"+ip+":8787", 20*time.Second); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return p
	}
	srv1 := start(ns1, "srv1", dir1, ip1, ip2)
	servertest.CopyIdentity(t, dir1, dir2)
	start(ns2, "srv2", dir2, ip2, ip1)
	key := newKey(t, ns1, t.TempDir(), "--reusable", "--store", store)

	m := &mesh{t: t, lab: l, key: key}
	up := func(ns *lab.NS, name string, servers ...string) *node {
		n := &node{name: name, iface: "wire-" + name, dir: t.TempDir(), ns: ns}
		args := []string{wireBin, "up", "--foreground", "--join", key, "--name", name, "--interface", n.iface, "--state-dir", n.dir}
		for _, s := range servers {
			args = append(args, "--server", s)
		}
		n.proc = lab.Start(t, ns, name, append(args, nodeFlags()...)...)
		m.waitUp(n)
		return n
	}
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATSymmetric)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATSymmetric)
	// a and b use srv1 first, c srv2: a and c can only meet on the relays,
	// and their relays are those of different replicas.
	a := up(l.NodeBehind(r1, "a", "192.168.1.10"), "a", url1, url2)
	c := up(l.NodeBehind(r2, "c", "192.168.2.10"), "c", url2, url1)
	b := up(l.Host("b", "203.0.113.30"), "b", url1, url2)
	nodes := []*node{a, b, c}
	took := m.waitPairs(30*time.Second, nodes...)
	t.Logf("every pair pings %v after the last node is up, a and c over two replicas' relays", took)
	waitPaths(t, 15*time.Second, map[[2]*node]string{{a, c}: "relay"})

	// Which pairs the relay carries, one way or both (a reaches b directly,
	// b answers through the relay): they move to srv2's relay, the others
	// never stop.
	relayed := map[[2]*node]bool{}
	for _, x := range nodes {
		for _, y := range nodes {
			if p, err := pathOf(x, y.name); x != y && err == nil && p == "relay" {
				relayed[[2]*node{x, y}], relayed[[2]*node{y, x}] = true, true
			}
		}
	}
	srv1.Kill()
	killed := time.Now()
	moved := map[*node]time.Duration{}
	back := map[[2]*node]time.Duration{}
	for round := 0; time.Since(killed) < 30*time.Second && round < 120; round++ {
		for _, x := range nodes {
			for _, y := range nodes {
				pair := [2]*node{x, y}
				if _, ok := back[pair]; x == y || ok {
					continue
				}
				err := vpnPing(x, y)
				switch {
				case err == nil:
					back[pair] = time.Since(killed)
				case !relayed[pair]:
					t.Fatalf("%v after srv1 was killed, %s cannot reach %s directly: %v", time.Since(killed).Round(time.Second), x.name, y.name, err)
				}
			}
			if _, ok := moved[x]; !ok {
				if st, err := x.statusServer(); err == nil && st == url2 {
					moved[x] = time.Since(killed)
				}
			}
		}
		for pair := range back {
			if !relayed[pair] {
				delete(back, pair) // a direct pair is checked every round
			}
		}
		if len(moved) == len(nodes) && len(back) == len(relayed) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for pair := range relayed {
		if d, ok := back[pair]; ok {
			t.Logf("relayed %s→%s pinged again %v after srv1 was killed", pair[0].name, pair[1].name, d.Round(100*time.Millisecond))
		} else {
			t.Errorf("relayed %s→%s did not ping within 30 s of srv1's death", pair[0].name, pair[1].name)
		}
	}
	for _, n := range nodes {
		d, ok := moved[n]
		if !ok {
			t.Errorf("%s did not move to srv2 within 30 s of srv1's death", n.name)
			continue
		}
		t.Logf("%s moved to srv2 %v after srv1 was killed", n.name, d.Round(100*time.Millisecond))
	}

	// A node that joins now, listing the dead replica first, joins
	// through the other, and every node learns of it.
	d := up(l.Host("d", "203.0.113.40"), "d", url1, url2)
	joined := time.Now()
	waitListed(t, 5*time.Second, "d", "after the failover", nodes...)
	t.Logf("every node listed d %v after it joined", time.Since(joined).Round(100*time.Millisecond))
	m.waitPairs(meshTimeout, append(nodes, d)...)
}

// statusServer is the server the node's daemon uses now.
func (n *node) statusServer() (string, error) {
	st, err := n.status()
	return st.ServerURL, err
}
