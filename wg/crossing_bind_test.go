package wg

import (
	"crypto/rand"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// gate sits under two userspace engines' binds and holds the first
// handshake initiation each sends until both have, so that they cross;
// then it delivers both, or only the one that loses the tie (lost: the
// winner's went missing, as at a NAT that had not yet seen a packet from
// its side). It notes every initiation's sender index.
type gate struct {
	lost bool

	mu      sync.Mutex
	held    [2]*heldSend
	indices [2]map[uint32]bool
}

type heldSend struct {
	bind conn.Bind
	msg  []byte
	ep   conn.Endpoint
}

// gated is one side's bind.
type gated struct {
	conn.Bind
	g    *gate
	side int
}

func newGate(lost bool) (*gate, *gated, *gated) {
	g := &gate{lost: lost, indices: [2]map[uint32]bool{{}, {}}}
	return g, &gated{Bind: conn.NewDefaultBind(), g: g, side: 0}, &gated{Bind: conn.NewDefaultBind(), g: g, side: 1}
}

func (b *gated) Send(bufs [][]byte, ep conn.Endpoint) error {
	var pass [][]byte
	var release []*heldSend
	b.g.mu.Lock()
	for _, p := range bufs {
		if !isInitiation(p) {
			pass = append(pass, p)
			continue
		}
		b.g.indices[b.side][index(p[4:])] = true
		if b.g.held[b.side] != nil {
			pass = append(pass, p)
			continue
		}
		b.g.held[b.side] = &heldSend{bind: b.Bind, msg: append([]byte(nil), p...), ep: ep}
		if other := b.g.held[1-b.side]; other != nil {
			release = b.g.release()
		}
	}
	b.g.mu.Unlock()
	for _, h := range release {
		h.bind.Send([][]byte{h.msg}, h.ep)
	}
	if len(pass) == 0 {
		return nil
	}
	return b.Bind.Send(pass, ep)
}

// release is what to deliver of the two held initiations. Callers hold
// g.mu.
func (g *gate) release() []*heldSend {
	a, b := g.held[0], g.held[1]
	if !g.lost {
		return []*heldSend{a, b}
	}
	if index(a.msg[4:]) > index(b.msg[4:]) {
		return []*heldSend{a}
	}
	return []*heldSend{b}
}

// initiations is how many initiations (by sender index: a copy sent
// again is the same) each side sent.
func (g *gate) initiations() (int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.indices[0]), len(g.indices[1])
}

// waitHandshake waits for both ends to have a handshake with the other
// (which an end that answered crossed initiations has, without a session).
func waitHandshake(t *testing.T, a, b *node) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ab, ba := peerOf(t, a, b.key.PublicKey()), peerOf(t, b, a.key.PublicKey())
		if !ab.LastHandshake.IsZero() && !ba.LastHandshake.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no handshake between %v and %v: %+v, %+v", a.addr, b.addr, ab, ba)
		}
	}
}

// TestCrossedHandshakes: two userspace engines given each other at once
// send initiations that cross. The handshake completes on those first
// initiations, without WireGuard's retry 5 s later (which would show as a
// second initiation): whether both arrive, or the winning one is lost on
// the way, which the winner's end makes up for by sending it again.
func TestCrossedHandshakes(t *testing.T) {
	for _, tt := range []struct {
		name string
		lost bool
	}{
		{"both arrive", false},
		{"the winner is lost", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, ba, bb := newGate(tt.lost)
			a, b := newNodeOn(t, "10.99.0.1", ba), newNodeOn(t, "10.99.0.2", bb)
			if err := a.Set(a.config(true, b)); err != nil {
				t.Fatal(err)
			}
			if err := b.Set(b.config(true, a)); err != nil {
				t.Fatal(err)
			}
			waitHandshake(t, a, b)
			ping(t, a, b)
			ping(t, b, a)
			if na, nb := g.initiations(); na != 1 || nb != 1 {
				t.Errorf("initiations: %d from a, %d from b; want one each", na, nb)
			}
		})
	}
}

// TestCrossingsForgetRemovedPeers: what the bind recorded of handshakes is
// forgotten when WireGuard drops a peer, whose handshake state goes with
// it.
func TestCrossingsForgetRemovedPeers(t *testing.T) {
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	if err := a.Set(a.config(true, b)); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(b.config(true, a)); err != nil {
		t.Fatal(err)
	}
	ping(t, a, b)
	if a.bind.crossings.entry(b.endpoint(), false, time.Now()) == nil {
		t.Fatal("a recorded nothing of its initiation to b")
	}
	if err := a.Patch(Patch{Remove: []Key{b.key.PublicKey()}}); err != nil {
		t.Fatal(err)
	}
	if a.bind.crossings.entry(b.endpoint(), false, time.Now()) != nil {
		t.Error("a kept its record of b's handshakes after removing b")
	}
}

// TestCrossingIgnoresStrangers: a stranger who spoofs a peer's address
// and knows the sender index of our initiation (it travels in the clear)
// but not our public key can neither have our initiation sent again nor
// answer it to turn the tie-break off. The same initiation with a mac1
// made for our key, which only a peer can make, is taken as crossing.
func TestCrossingIgnoresStrangers(t *testing.T) {
	a := newNode(t, "10.99.0.1")
	peerKey, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sock := listenLoopback(t) // where a sends to its peer, and whence we spoof it
	cfg := Config{PrivateKey: a.key, Address: netip.MustParsePrefix("10.99.0.1/16"), Peers: []Peer{{
		PublicKey:  peerKey.PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")},
		Endpoint:   netip.MustParseAddrPort(sock.LocalAddr().String()),
	}}}
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	// next is the sender index of the next initiation a sends its peer
	// within wait.
	buf := make([]byte, 2048)
	next := func(wait time.Duration) (uint32, bool) {
		sock.SetReadDeadline(time.Now().Add(wait))
		for {
			n, _, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				return 0, false
			}
			if isInitiation(buf[:n]) {
				return index(buf[4:]), true
			}
		}
	}
	ours, ok := next(10 * time.Second)
	if !ok {
		t.Fatal("a sent its peer no initiation")
	}
	to := net.UDPAddrFromAddrPort(a.endpoint())
	send := func(b []byte) {
		if _, err := sock.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// resent says whether a sends ours again within wait.
	resent := func(wait time.Duration) bool {
		for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
			if i, ok := next(time.Until(deadline)); ok && i == ours {
				return true
			}
		}
		return false
	}

	forged := initiation(math.MaxUint32) // loses to ours: a would send ours again
	rand.Read(forged[8:])
	send(forged)
	if resent(150 * time.Millisecond) {
		t.Fatal("a stranger's initiation had a send its own again")
	}
	answer := response(7, ours) // would say ours is answered, and nothing crosses it
	rand.Read(answer[12:])
	send(answer)

	key := mac1Key(a.key.PublicKey())
	mac, _ := blake2s.New128(key[:])
	mac.Write(forged[:offMAC1])
	mac.Sum(forged[:offMAC1])
	send(forged)
	if !resent(700 * time.Millisecond) {
		t.Fatal("an initiation with a mac1 for a's key, crossing a's, did not have a send its own again (or a stranger's answer had a forget its own)")
	}
}
