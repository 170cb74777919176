package wg

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// inDevice is the public keys wireguard-go itself holds peers for.
func inDevice(t *testing.T, n *node) []Key {
	t.Helper()
	text, err := n.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	peers, err := parsePeers(text)
	if err != nil {
		t.Fatal(err)
	}
	var keys []Key
	for _, p := range peers {
		keys = append(keys, p.PublicKey)
	}
	return keys
}

// keepalive is the persistent keepalive of the one peer n's wireguard-go
// holds.
func keepalive(t *testing.T, n *node) string {
	t.Helper()
	text, err := n.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	_, v, _ := strings.Cut(text, "persistent_keepalive_interval=")
	v, _, _ = strings.Cut(v, "\n")
	return v
}

// listener is a UDP socket standing in for a peer that is not there.
func listener(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// clock is a settable time for the engines' idle peers; set it on an
// engine before any traffic.
type clock struct{ at atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.at.Store(time.Now().UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.at.Load()) }
func (c *clock) advance(d time.Duration) { c.at.Add(int64(d)) }

// TestInitiator reads the initiator's key out of a handshake initiation
// that wireguard-go made, and nothing out of one for another key or one
// with a byte changed.
func TestInitiator(t *testing.T) {
	allLazy(t) // the initiation comes from a packet that woke the peer
	a := newNode(t, "10.99.0.1")
	b, _ := wgtypes.GeneratePrivateKey()
	sock, at := listener(t)
	peer := Peer{PublicKey: b.PublicKey(), Endpoint: at, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}
	if err := a.Set(Config{PrivateKey: a.key, Address: netip.MustParsePrefix("10.99.0.1/16"), Peers: []Peer{peer}}); err != nil {
		t.Fatal(err)
	}
	a.tun.Outbound <- tuntest.Ping(netip.MustParseAddr("10.99.0.2"), a.addr)
	msg := make([]byte, 2048)
	sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := sock.ReadFromUDP(msg)
	if err != nil {
		t.Fatalf("no handshake initiation came: %v", err)
	}
	msg = msg[:n]
	if !isInitiation(msg) {
		t.Fatalf("got %d bytes %x, not an initiation", n, msg[:min(n, 8)])
	}
	if got, ok := newResponder(b).initiator(msg); !ok || got != a.key.PublicKey() {
		t.Errorf("initiator = %v, %v; want %v", got, ok, a.key.PublicKey())
	}
	other, _ := wgtypes.GeneratePrivateKey()
	if got, ok := newResponder(other).initiator(msg); ok {
		t.Errorf("another key read the initiator %v out of it", got)
	}
	for _, i := range []int{0, offEphemeral, offStatic, offMAC1} {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 1
		if got, ok := newResponder(b).initiator(bad); ok {
			t.Errorf("with byte %d changed, initiator = %v", i, got)
		}
	}
}

// TestPeersSleepUntilTraffic: wireguard-go holds no peer until a packet
// goes to one, or comes from one; Peers lists the others as idle; a peer
// without traffic for idleAfter sleeps again (its keepalives do not keep
// it awake), and wakes again with its settings as changed meanwhile; a
// peer removed while asleep is gone.
func TestPeersSleepUntilTraffic(t *testing.T) {
	allLazy(t)
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	c := newClock()
	a.lazy.now, b.lazy.now = c.now, c.now
	_, gone := listener(t)
	ghost, _ := wgtypes.GeneratePrivateKey()
	ghostPeer := Peer{PublicKey: ghost.PublicKey(), Endpoint: gone, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.3/32")}}
	acfg := a.config(true, b)
	acfg.Peers = append(acfg.Peers, ghostPeer)
	if err := a.Set(acfg); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(b.config(false, a)); err != nil { // b learns where a is from its handshake
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 0 {
		t.Fatalf("before any traffic, a's wireguard-go holds %v; want none", got)
	}
	peers, err := a.Peers()
	if err != nil || len(peers) != 2 || !peers[0].Idle || !peers[1].Idle {
		t.Fatalf("a's Peers = %+v, %v; want both, idle", peers, err)
	}

	ping(t, a, b) // wakes b at a, and a at b by its initiation
	if got := inDevice(t, a); len(got) != 1 || got[0] != b.key.PublicKey() {
		t.Errorf("after a packet to b, a's wireguard-go holds %v; want b alone", got)
	}
	if got := inDevice(t, b); len(got) != 1 || got[0] != a.key.PublicKey() {
		t.Errorf("after a's handshake, b's wireguard-go holds %v; want a", got)
	}
	if p := peerOf(t, a, b.key.PublicKey()); p.Idle || p.LastHandshake.IsZero() {
		t.Errorf("a's peer b = %+v; want awake, with a handshake", p)
	}
	if got := keepalive(t, b); got != "0" {
		t.Errorf("b, woken by a's initiation, gave a a keepalive of %q; want none yet", got)
	}
	ping(t, b, a)
	waitUntil(t, "b to give a its keepalive after sending it a packet", func() bool { return keepalive(t, b) == "25" })

	// Idle: a clock past idleAfter puts both to sleep, whatever their
	// keepalives did meanwhile.
	c.advance(idleAfter + time.Second)
	if n := a.lazy.sleep(); n != 1 {
		t.Errorf("a put %d peers to sleep, want 1", n)
	}
	if n := b.lazy.sleep(); n != 1 {
		t.Errorf("b put %d peers to sleep, want 1", n)
	}
	if got := inDevice(t, a); len(got) != 0 {
		t.Errorf("after idleAfter, a's wireguard-go holds %v; want none", got)
	}
	if n := a.lazy.sleep(); n != 0 {
		t.Errorf("a put %d more peers to sleep, want none", n)
	}

	// Changed while asleep: the ghost's endpoint moves (nothing is sent
	// to wireguard-go), then it is removed.
	_, moved := listener(t)
	ghostPeer.Endpoint = moved
	acfg.Peers[1] = ghostPeer
	if err := a.Set(acfg); err != nil {
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 0 {
		t.Errorf("changing an asleep peer gave wireguard-go %v", got)
	}
	if p := peerOf(t, a, ghost.PublicKey()); !p.Idle || p.Endpoint != moved {
		t.Errorf("the asleep ghost = %+v; want idle at %v", p, moved)
	}
	a.tun.Outbound <- tuntest.Ping(netip.MustParseAddr("10.99.0.3"), a.addr)
	waitUntil(t, "a packet to wake the ghost", func() bool { return len(inDevice(t, a)) == 1 })
	if p := peerOf(t, a, ghost.PublicKey()); p.Idle || p.Endpoint != moved {
		t.Errorf("the woken ghost = %+v; want awake at %v", p, moved)
	}
	if err := a.Set(a.config(true, b)); err != nil {
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 0 {
		t.Errorf("after removing the ghost, a's wireguard-go holds %v; want none", got)
	}
	if peers, _ := a.Peers(); len(peers) != 1 || peers[0].PublicKey != b.key.PublicKey() || !peers[0].Idle {
		t.Errorf("a's Peers = %+v; want b alone, idle", peers)
	}

	// Asleep on both sides, the tunnel comes back at the first packet.
	ping(t, b, a)
	ping(t, a, b)
	if err := a.Patch(Patch{Remove: []Key{b.key.PublicKey()}}); err != nil {
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 0 {
		t.Errorf("after a Patch removed b, a's wireguard-go holds %v", got)
	}
}

// TestPacketsKeepPeersAwake: traffic through the TUN device within
// idleAfter keeps a peer awake.
func TestPacketsKeepPeersAwake(t *testing.T) {
	allLazy(t)
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	if err := a.Set(a.config(true, b)); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(b.config(true, a)); err != nil {
		t.Fatal(err)
	}
	c := newClock()
	a.lazy.now = c.now
	ping(t, a, b)
	c.advance(idleAfter * 2 / 3)
	ping(t, b, a) // a receives: a's peer b is in use
	c.advance(idleAfter * 2 / 3)
	if n := a.lazy.sleep(); n != 0 {
		t.Errorf("a put %d peers to sleep %v after the last packet; want none", n, idleAfter*2/3)
	}
	c.advance(idleAfter * 2 / 3)
	if n := a.lazy.sleep(); n != 1 {
		t.Errorf("a put %d peers to sleep %v after the last packet; want 1", n, idleAfter*4/3)
	}
}

// allLazy makes every peer start asleep, however small the mesh, for the
// test.
func allLazy(t *testing.T) {
	was := eagerUpTo
	eagerUpTo = 0
	t.Cleanup(func() { eagerUpTo = was })
}

// TestSmallMeshStaysAwake: up to eagerUpTo peers are all given to
// wireguard-go at once; beyond it new ones start asleep and idle ones
// sleep; when the mesh is small again, the asleep ones wake.
func TestSmallMeshStaysAwake(t *testing.T) {
	was := eagerUpTo
	eagerUpTo = 1
	t.Cleanup(func() { eagerUpTo = was })
	a := newNode(t, "10.99.0.1")
	c := newClock()
	a.lazy.now = c.now
	_, at2 := listener(t)
	_, at3 := listener(t)
	k2, _ := wgtypes.GeneratePrivateKey()
	k3, _ := wgtypes.GeneratePrivateKey()
	p2 := Peer{PublicKey: k2.PublicKey(), Endpoint: at2, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}
	p3 := Peer{PublicKey: k3.PublicKey(), Endpoint: at3, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.3/32")}}
	cfg := Config{PrivateKey: a.key, Address: netip.MustParsePrefix("10.99.0.1/16"), Peers: []Peer{p2}}
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 1 {
		t.Errorf("a mesh of one peer: wireguard-go holds %v, want it", got)
	}
	if n := a.lazy.sleep(); n != 0 {
		t.Errorf("a small mesh put %d peers to sleep", n)
	}
	cfg.Peers = append(cfg.Peers, p3)
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if got := inDevice(t, a); len(got) != 1 || got[0] != p2.PublicKey {
		t.Errorf("past eagerUpTo: wireguard-go holds %v, want the first peer alone", got)
	}
	c.advance(idleAfter + time.Second)
	if n := a.lazy.sleep(); n != 1 || len(inDevice(t, a)) != 0 {
		t.Errorf("past eagerUpTo, the idle peer did not sleep: %d went, %v held", n, inDevice(t, a))
	}
	cfg.Peers = cfg.Peers[1:]
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	a.lazy.sleep()
	if got := inDevice(t, a); len(got) != 1 || got[0] != p3.PublicKey {
		t.Errorf("small again: wireguard-go holds %v, want the asleep peer woken", got)
	}
}

// TestCloseWhileWaking: an engine closes at once while packets go to
// asleep peers, each waking one: wireguard-go's Close waits for its TUN
// goroutine, so that goroutine must not be waiting for the device.
func TestCloseWhileWaking(t *testing.T) {
	allLazy(t)
	a := newNode(t, "10.99.0.1")
	cfg := Config{PrivateKey: a.key, Address: netip.MustParsePrefix("10.99.0.1/16")}
	for i := range 200 {
		k, _ := wgtypes.GeneratePrivateKey()
		_, at := listener(t)
		cfg.Peers = append(cfg.Peers, Peer{PublicKey: k.PublicKey(), Endpoint: at,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 1, byte(i)}), 32)}})
	}
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case a.tun.Outbound <- tuntest.Ping(netip.AddrFrom4([4]byte{10, 99, 1, byte(i % 200)}), a.addr):
			case <-stop:
				return
			}
		}
	}()
	waitUntil(t, "some peers to wake", func() bool { return len(inDevice(t, a)) >= 10 })
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		// A deadlock: the test's cleanup would hang too, so the panic's
		// goroutine dump is the failure. (With the device called from the
		// packet paths, the engine already hangs before Close, and go
		// test's timeout reports it.)
		panic("Close did not return within 10 s while peers were waking")
	}
	close(stop)
	<-sent
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPacketAddresses(t *testing.T) {
	v4 := tuntest.Ping(netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"))
	if got := dstAddr(v4); got.String() != "10.99.0.2" {
		t.Errorf("dstAddr = %v", got)
	}
	if got := srcAddr(v4); got.String() != "10.99.0.1" {
		t.Errorf("srcAddr = %v", got)
	}
	v6 := make([]byte, 40)
	v6[0] = 6 << 4
	copy(v6[8:], netip.MustParseAddr("fd00::1").AsSlice())
	copy(v6[24:], netip.MustParseAddr("fd00::2").AsSlice())
	if got := dstAddr(v6); got.String() != "fd00::2" {
		t.Errorf("IPv6 dstAddr = %v", got)
	}
	if got := srcAddr(v6); got.String() != "fd00::1" {
		t.Errorf("IPv6 srcAddr = %v", got)
	}
	for _, p := range [][]byte{nil, {0x45}, []byte(strings.Repeat("\x60", 39))} {
		if got := dstAddr(p); got.IsValid() {
			t.Errorf("dstAddr(%x) = %v, want none", p, got)
		}
	}
}
