package relay

import (
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

	// A node bound nowhere: dropped at the relay it was sent to, and not
	// sent on by the other.
	a.send(t, ipC, "to nobody")
	waitStat(t, r2, func(s Stats) bool { return s.NoRoute == 1 })
	if s := r1.Stats(); s.NoRoute != 0 || s.MeshSent != 3 {
		t.Errorf("r1: %+v; want the packet to nobody sent once to the mesh", s)
	}

	// A relay with another key sends a FORWARD as if from the mesh.
	other := opts
	other.MeshKey = []byte("not the mesh's key")
	r3 := startServer(t, other)
	r3.SetMesh([]netip.AddrPort{r2.addr})
	c := r3.join(t, ipC)
	c.send(t, ipB, "forged")
	waitStat(t, r2, func(s Stats) bool { return s.MeshBad == 1 })
	b.expectNothing(t)
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
