package relay

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Two relays of one mesh: a node bound to each reaches the other, both
// ways, for small and full-sized packets, and a relay outside the mesh
// (another key) can inject nothing.
func TestMeshForwardsBetweenRelays(t *testing.T) {
	key := []byte("a key the mesh's relays share, 32")
	opts := noLimits
	opts.MeshKey = key
	r1, r2 := startServer(t, opts), startServer(t, opts)
	r1.SetMesh([]netip.AddrPort{r2.addr})
	r2.SetMesh([]netip.AddrPort{r1.addr})
	a, b := r1.join(t, ipA), r2.join(t, ipB)

	a.send(t, ipB, "hello from a")
	b.expect(t, packet{ipA, "hello from a"})
	b.send(t, ipA, "hello from b")
	a.expect(t, packet{ipB, "hello from b"})
	big := strings.Repeat("x", 1400)
	a.send(t, ipB, big)
	b.expect(t, packet{ipA, big})

	// Each learned where the other's node is: one FORWARD per packet,
	// not one per relay of the mesh.
	if s := r1.Stats(); s.MeshSent != 2 || s.MeshReceived != 1 {
		t.Errorf("r1 sent %d FORWARDs and delivered %d, want 2 and 1", s.MeshSent, s.MeshReceived)
	}

	// A node bound nowhere: sent to the mesh, missed at the relay it was
	// sent to, and not sent on by that one. Neither can know it is bound
	// nowhere, so neither counts it as no route.
	a.send(t, ipC, "to nobody")
	waitStat(t, r2, func(s Stats) bool { return s.MeshMissed == 1 })
	if s := r1.Stats(); s.MeshSent != 3 || s.NoRoute != 0 || r2.Stats().NoRoute != 0 || r2.Stats().MeshSent != 1 {
		t.Errorf("r1: %+v, r2: %+v; want the packet to nobody sent once to the mesh, and no route counted", s, r2.Stats())
	}

	// A relay listed as r2's peer, but with another key, sends a FORWARD
	// as if from the mesh; and one with the key that r2 does not list.
	other := opts
	other.MeshKey = []byte("not the mesh's key")
	r3 := startServer(t, other)
	r2.SetMesh([]netip.AddrPort{r1.addr, r3.addr})
	r3.SetMesh([]netip.AddrPort{r2.addr})
	r3.join(t, ipC).send(t, ipB, "forged")
	waitStat(t, r2, func(s Stats) bool { return s.MeshBad == 1 })
	r4 := startServer(t, opts) // the key, but not in the list
	r4.SetMesh([]netip.AddrPort{r2.addr})
	r4.join(t, ipC).send(t, ipB, "from outside the list")
	waitStat(t, r2, func(s Stats) bool { return s.MeshBad == 2 })
	b.expectNothing(t)
}

// Three relays: DATA for a node the first relay has no route to goes to
// both others; the one the node is bound to delivers it, and the other
// counts it as missed, not as a packet with no route.
func TestMeshBroadcastIsMissedNotUnroutable(t *testing.T) {
	opts := noLimits
	opts.MeshKey = []byte("a key the mesh's relays share, 32")
	r1, r2, r3 := startServer(t, opts), startServer(t, opts), startServer(t, opts)
	r1.SetMesh([]netip.AddrPort{r2.addr, r3.addr})
	r2.SetMesh([]netip.AddrPort{r1.addr, r3.addr})
	r3.SetMesh([]netip.AddrPort{r1.addr, r2.addr})
	a, c := r1.join(t, ipA), r3.join(t, ipC)

	a.send(t, ipC, "to c, wherever it is")
	c.expect(t, packet{ipA, "to c, wherever it is"})
	waitStat(t, r2, func(s Stats) bool { return s.MeshMissed == 1 })
	for i, r := range []*testRelay{r1, r2, r3} {
		if s := r.Stats(); s.NoRoute != 0 {
			t.Errorf("r%d counted %d packets with no route, want none: %+v", i+1, s.NoRoute, s)
		}
	}
	if s := r1.Stats(); s.MeshSent != 2 {
		t.Errorf("r1 sent %d FORWARDs, want 2 (one to each relay)", s.MeshSent)
	}
	if s := r3.Stats(); s.MeshReceived != 1 || s.MeshMissed != 0 {
		t.Errorf("r3: %+v; want the FORWARD delivered", s)
	}
}

// A FORWARD replayed outside the window, even from a relay of the mesh,
// is refused.
func TestMeshRefusesStaleForward(t *testing.T) {
	key := []byte("a key the mesh's relays share, 32")
	m := newMesh(key)
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	m.peers.Store(&[]netip.AddrPort{peer})
	f := make([]byte, forwardOverhead+3)
	copy(f, []byte{'w', 'r', Version, typeForward})
	copy(f[forwardOverhead:], "abc")
	now := time.Now()
	m.seal(f, now.Add(-2*Window))
	if _, _, err := m.open(f, peer, now); !errors.Is(err, ErrStale) {
		t.Errorf("a FORWARD two windows old: %v, want ErrStale", err)
	}
	m.seal(f, now)
	if _, _, err := m.open(f, peer, now); err != nil {
		t.Errorf("a fresh FORWARD: %v", err)
	}
	f[len(f)-1] ^= 1
	if _, _, err := m.open(f, peer, now); !errors.Is(err, ErrBadMAC) {
		t.Errorf("a FORWARD with a changed payload: %v, want ErrBadMAC", err)
	}
}

// Without a mesh, a FORWARD is malformed, and DATA to a node bound
// nowhere is dropped as before.
func TestNoMeshNoForward(t *testing.T) {
	r := startServer(t, noLimits)
	a := r.join(t, ipA)
	a.send(t, ipB, "to nobody")
	waitStat(t, r, func(s Stats) bool { return s.NoRoute == 1 && s.MeshSent == 0 })
	r.SetMesh([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}) // no key: ignored
	a.send(t, ipB, "to nobody")
	waitStat(t, r, func(s Stats) bool { return s.NoRoute == 2 && s.MeshSent == 0 })
}

func waitStat(t *testing.T, r *testRelay, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !ok(r.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("relay stats %+v", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One batch of DATA to a node bound nowhere, fanned out to several relays
// of the mesh, with HELLOs among them: the outbox holds more entries than
// datagrams, and every HELLO is answered.
func TestMeshFanOutInABatch(t *testing.T) {
	opts := noLimits
	opts.MeshKey = []byte("a key the mesh's relays share, 32")
	conn := listen(t)
	tokens := &mapTokens{m: map[netip.Addr][]byte{ipA: token(ipA)}}
	s := NewServer(conn, tokens, opts)
	w := newBatchIO(conn)
	if w == nil {
		t.Skip("no batch I/O on this platform")
	}
	out := newOutbox(w)
	// Three relays of the mesh that nothing answers for.
	var peers []netip.AddrPort
	for range 3 {
		peers = append(peers, netip.MustParseAddrPort(listen(t).LocalAddr().String()))
	}
	s.SetMesh(peers)
	a := netip.MustParseAddrPort(listen(t).LocalAddr().String())
	now := time.Now()
	var bufs [][]byte
	var from []netip.AddrPort
	for i := range maxBatch {
		var b []byte
		if i%2 == 0 {
			b = AppendHello(make([]byte, 0, maxDatagram), ipA, token(ipA), now, uint64(i))
		} else {
			b = AppendData(make([]byte, 0, maxDatagram), ipC, []byte("to nobody here"))
		}
		bufs, from = append(bufs, b), append(from, a)
	}
	s.handleBatch(out, bufs, from, now) // panicked when acks were indexed by the outbox's length
	st := s.Stats()
	if st.HellosOK != maxBatch/2 {
		t.Errorf("%d HELLOs answered, want %d", st.HellosOK, maxBatch/2)
	}
	if st.MeshSent != 3*(maxBatch/2) {
		t.Errorf("%d FORWARDs sent, want %d (every DATA to each of 3 relays)", st.MeshSent, 3*(maxBatch/2))
	}
}
