//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// results are the figures of one run.
type results struct {
	wire, stock, raw []transfer // one per round
	relayed          []transfer // the symmetric-NAT pair, through the relay; CPU of the server, nr1, nr2
	relayPath        peer       // nr1's view of nr2 before the relayed runs
	tcpRelayed       []transfer // nr1 to nt, whose UDP is blocked: the relay over TCP
	tcpPath          peer       // nr1's view of nt before those runs
	path             peer       // n1's view of n2 before the first wire run
	serverBytes      uint64     // what the server's interface carried during the wire runs

	peersIdle      int        // n1's peers while idle
	idle           lab.Memory // n1's daemon, idle
	stockIdle      lab.Memory // the stock process in n1, idle with its one peer
	wire1, wire2   lab.Memory // n1's and n2's daemons right after the last wire run
	stock1, stock2 lab.Memory // the stock processes in n1 and n2 right after theirs
	// the same, once the daemons have seen the burst end (idleAfter)
	wire1Idle, wire2Idle, stock1Idle, stock2Idle lab.Memory

	joinToPing []time.Duration // each new node alone behind its router
	joinShared []time.Duration // each new node behind n4's router
	props      []propagation

	took time.Duration
}

// The lab's addresses. n1 and n2 are the pair measured, each behind its
// own cone NAT; n3, a public host, and n4, behind r3, make n1's peers
// three. Nodes joined later get a router each (203.0.113.2x, .4x), or
// share r3 with n4.
const (
	r1WAN, r1LAN, n1LAN = "203.0.113.11", "192.168.1.0/24", "192.168.1.10"
	r2WAN, r2LAN, n2LAN = "203.0.113.12", "192.168.2.0/24", "192.168.2.10"
	r3WAN, r3LAN, n4LAN = "203.0.113.13", "192.168.3.0/24", "192.168.3.10"
	n3IP                = "203.0.113.30"
	// nr1 and nr2, each behind a symmetric NAT, can only meet on the relay.
	r5WAN, r5LAN, nr1LAN = "203.0.113.15", "192.168.5.0/24", "192.168.5.10"
	r6WAN, r6LAN, nr2LAN = "203.0.113.16", "192.168.6.0/24", "192.168.6.10"
	// nt, behind a router that drops UDP, reaches the relay over TCP.
	r7WAN, r7LAN, ntLAN = "203.0.113.17", "192.168.7.0/24", "192.168.7.10"
)

// collect builds the lab and the mesh, and measures.
func collect(ctx context.Context, b *bench, h host, o options) results {
	var res results
	l := lab.New(b)
	r1 := l.Router("r1", r1WAN, r1LAN, lab.NATCone)
	r2 := l.Router("r2", r2WAN, r2LAN, lab.NATCone)
	r3 := l.Router("r3", r3WAN, r3LAN, lab.NATCone)
	m := startMesh(b, l, h.wire)
	b.Logf("mesh: n1 behind r1, n2 behind r2, n3 public, n4 behind r3")
	n1 := m.join(l.NodeBehind(r1, "n1", n1LAN), "n1")
	n2 := m.join(l.NodeBehind(r2, "n2", n2LAN), "n2")
	n3 := m.join(l.Host("n3", n3IP), "n3")
	n4 := m.join(l.NodeBehind(r3, "n4", n4LAN), "n4")
	base := []*node{n1, n2, n3, n4}
	for _, n := range base {
		_, err := n.waitUp(ctx)
		must(b, err)
	}
	must(b, waitPairs(ctx, 20*time.Second, base...))
	r5 := l.Router("r5", r5WAN, r5LAN, lab.NATSymmetric)
	r6 := l.Router("r6", r6WAN, r6LAN, lab.NATSymmetric)
	nr1 := m.join(l.NodeBehind(r5, "nr1", nr1LAN), "nr1")
	nr2 := m.join(l.NodeBehind(r6, "nr2", nr2LAN), "nr2")
	r7 := l.Router("r7", r7WAN, r7LAN, lab.NATCone)
	r7.DropUDP()
	nt := m.join(l.NodeBehind(r7, "nt", ntLAN), "nt")
	for _, n := range []*node{nr1, nr2, nt} {
		_, err := n.waitUp(ctx)
		must(b, err)
	}
	must(b, waitPairs(ctx, 30*time.Second, nr1, nr2, nt))
	rel := relayPair{nr1, nr2, nt}

	b.Logf("memory of n1's daemon, idle")
	sleep(ctx, b, 2*time.Second)
	peers, err := n1.peers(ctx, "peers")
	must(b, err)
	res.peersIdle = len(peers)
	res.idle, err = lab.ReadMemory(n1.proc.Pid())
	must(b, err)

	throughput(ctx, b, h, o, m, n1, n2, rel, &res)
	joins(ctx, b, l, r3, m, o, base, &res)
	return res
}

// throughput measures n1 → n2 over wire, over stock wireguard-go on the
// same path, and over the raw path, in rounds, then reads the memory of
// the processes that carried the traffic.
func throughput(ctx context.Context, b *bench, h host, o options, m *mesh, n1, n2 *node, rel relayPair, res *results) {
	startIperf(b, n2.ns)
	startIperf(b, rel.b.ns)
	startIperf(b, rel.tcp.ns)
	res.relayPath = rel.waitPath(ctx, b, rel.b, "relay")
	res.tcpPath = rel.waitPath(ctx, b, rel.tcp, "relay-tcp")
	must(b, forward(n2.ns.Router, iperfPort, n2.ns.IP))
	s1 := newStockEnd(b, n1.ns, 1, "10.98.0.1")
	s2 := newStockEnd(b, n2.ns, 2, "10.98.0.2")
	b.Logf("stock wireguard-go: %s in n1, %s in n2", s1.iface, s2.iface)
	startStock(ctx, b, h.wireguardGo, s1, s2)
	var err error
	res.stockIdle, err = lab.ReadMemory(s1.proc.Pid())
	must(b, err)

	peers, err := n1.peers(ctx, "status")
	must(b, err)
	res.path = peers[n2.name]
	if res.path.Path != "direct" {
		b.Errorf("n1's wire status shows n2 on path %q, not direct: the wire runs measure something else", res.path.Path)
	}
	for round := 1; round <= o.rounds; round++ {
		b.Logf("iperf3 round %d of %d: wire, stock wireguard-go, raw (%d s each)", round, o.rounds, o.secs)
		before, err := m.srv.Counters("eth0")
		must(b, err)
		x, err := transferFrom(ctx, n1.ns, n2.vpnIP, o.secs, n1.proc.Pid(), n2.proc.Pid())
		must(b, err)
		after, err := m.srv.Counters("eth0")
		must(b, err)
		d := after.Sub(before)
		res.serverBytes += d.RxBytes + d.TxBytes
		res.wire = append(res.wire, x)
		if round == o.rounds {
			readMemory(b, memoryOf{&res.wire1, n1.proc}, memoryOf{&res.wire2, n2.proc})
		}

		x, err = transferFrom(ctx, n1.ns, s2.ip.String(), o.secs, s1.proc.Pid(), s2.proc.Pid())
		must(b, err)
		res.stock = append(res.stock, x)
		if round == o.rounds {
			readMemory(b, memoryOf{&res.stock1, s1.proc}, memoryOf{&res.stock2, s2.proc})
		}
		burstEnd := time.Now()

		x, err = transferFrom(ctx, n1.ns, n2.ns.Router.IP.String(), o.secs)
		must(b, err)
		res.raw = append(res.raw, x)

		stop := o.record(ctx, b, round, "relay-udp", m.proc.Pid(), rel.a.proc.Pid(), rel.b.proc.Pid())
		x, err = transferFrom(ctx, rel.a.ns, rel.b.vpnIP, o.secs, m.proc.Pid(), rel.a.proc.Pid(), rel.b.proc.Pid())
		stop()
		must(b, err)
		res.relayed = append(res.relayed, x)

		stop = o.record(ctx, b, round, "relay-tcp", m.proc.Pid(), rel.a.proc.Pid(), rel.tcp.proc.Pid())
		x, err = transferFrom(ctx, rel.a.ns, rel.tcp.vpnIP, o.secs, m.proc.Pid(), rel.a.proc.Pid(), rel.tcp.proc.Pid())
		stop()
		must(b, err)
		res.tcpRelayed = append(res.tcpRelayed, x)
		if round == o.rounds {
			sleep(ctx, b, time.Until(burstEnd.Add(idleAfter)))
			readMemory(b, memoryOf{&res.wire1Idle, n1.proc}, memoryOf{&res.wire2Idle, n2.proc},
				memoryOf{&res.stock1Idle, s1.proc}, memoryOf{&res.stock2Idle, s2.proc})
		}
	}
}

// idleAfter is how long after a burst the memory is read again: the
// daemon looks at its traffic every 10 s, and returns memory at the
// first quiet look after a busy one.
const idleAfter = 25 * time.Second

// memoryOf is where to put the memory of a process.
type memoryOf struct {
	dst  *lab.Memory
	proc *lab.Proc
}

func readMemory(t lab.T, of ...memoryOf) {
	for _, o := range of {
		m, err := lab.ReadMemory(o.proc.Pid())
		must(t, err)
		*o.dst = m
	}
}

// joins joins fresh nodes: first to time propagation to every node
// already in the mesh, then, without that polling load, to time
// join-to-ping from n1, for nodes alone behind a router of their own and
// for nodes behind r3, where n4 already holds the WireGuard port.
func joins(ctx context.Context, b *bench, l *lab.Lab, r3 *lab.Router, m *mesh, o options, base []*node, res *results) {
	existing := slices.Clone(base)
	for i := 1; i <= o.joins; i++ {
		name := fmt.Sprintf("p%d", i)
		b.Logf("propagation: %s joins, %d nodes polled", name, len(existing))
		r := l.Router("rp"+strconv.Itoa(i), fmt.Sprintf("203.0.113.2%d", i), fmt.Sprintf("10.1.%d.0/24", i), lab.NATCone)
		n, p, err := m.propagate(ctx, l.NodeBehind(r, name, fmt.Sprintf("10.1.%d.10", i)), name, existing)
		must(b, err)
		res.props = append(res.props, p)
		existing = append(existing, n)
		sleep(ctx, b, time.Second)
	}
	for i := 1; i <= o.joins; i++ {
		name := fmt.Sprintf("j%d", i)
		b.Logf("join-to-ping: %s joins behind a router of its own, n1 pings it", name)
		r := l.Router("rj"+strconv.Itoa(i), fmt.Sprintf("203.0.113.4%d", i), fmt.Sprintf("10.2.%d.0/24", i), lab.NATCone)
		_, took, err := m.joinToPing(ctx, l.NodeBehind(r, name, fmt.Sprintf("10.2.%d.10", i)), name, base[0])
		must(b, err)
		res.joinToPing = append(res.joinToPing, took)
		sleep(ctx, b, time.Second)
	}
	for i := 1; i <= o.joins; i++ {
		name := fmt.Sprintf("s%d", i)
		b.Logf("join-to-ping: %s joins behind r3 with n4, n1 pings it", name)
		_, took, err := m.joinToPing(ctx, l.NodeBehind(r3, name, fmt.Sprintf("192.168.3.%d", 20+i)), name, base[0])
		must(b, err)
		res.joinShared = append(res.joinShared, took)
		sleep(ctx, b, time.Second)
	}
}

// relayPair is two nodes that can only meet on the relay, and a third
// that a reaches on the relay over TCP.
type relayPair struct{ a, b, tcp *node }

// waitPath waits until a's status shows to on the path, and returns it.
func (r relayPair) waitPath(ctx context.Context, b *bench, to *node, path string) peer {
	var p peer
	err := lab.Poll(20*time.Second, 250*time.Millisecond, func() error {
		peers, err := r.a.peers(ctx, "status")
		if err != nil {
			return err
		}
		if p = peers[to.name]; p.Path != path {
			return fmt.Errorf("%s shows %s on path %q, not %s", r.a.name, to.name, p.Path, path)
		}
		return nil
	})
	must(b, err)
	return p
}

// must ends the run on an error.
func must(t lab.T, err error) {
	if err != nil {
		t.Fatalf("%v", err)
	}
}

// sleep waits, or ends the run if ctx ends first.
func sleep(ctx context.Context, t lab.T, d time.Duration) {
	select {
	case <-ctx.Done():
		t.Fatalf("interrupted")
	case <-time.After(d):
	}
}
