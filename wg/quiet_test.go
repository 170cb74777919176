package wg

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// setQuietFor sets quietFor for one test.
func setQuietFor(t *testing.T, d time.Duration) {
	old := quietFor
	quietFor = d
	t.Cleanup(func() { quietFor = old })
}

// below and above are peer keys lower and higher than any real public
// key but a 2^-248 few.
func below(n byte) Key { return Key{31: n} }
func above(n byte) Key {
	k := Key{31: n}
	for i := range 31 {
		k[i] = 0xff
	}
	return k
}

// TestQuietStart: of a new pair, the end with the higher key configures
// the peer without its persistent keepalive, and gives it the keepalive
// when due, once; a peer changed before then stays quiet, one removed is
// not sent it; a failed dressing is tried again later.
func TestQuietStart(t *testing.T) {
	setQuietFor(t, time.Hour)
	r := newRecorder()
	r.lock = &sync.Mutex{}
	defer r.stop()
	private, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	yielded := Peer{PublicKey: below(1), AllowedIPs: prefixes("10.99.0.2/32")}
	kept := Peer{PublicKey: above(1), AllowedIPs: prefixes("10.99.0.3/32")}
	cfg := Config{PrivateKey: private, Peers: []Peer{yielded, kept}}
	if err := r.set(cfg); err != nil {
		t.Fatal(err)
	}
	want := []wgtypes.PeerConfig{
		{PublicKey: below(1), PersistentKeepaliveInterval: ptr(time.Duration(0)), ReplaceAllowedIPs: true, AllowedIPs: ipNets(yielded.AllowedIPs)},
		{PublicKey: above(1), PersistentKeepaliveInterval: ptr(Keepalive), ReplaceAllowedIPs: true, AllowedIPs: ipNets(kept.AllowedIPs)},
	}
	if diff := cmp.Diff(want, r.applied[0].Peers); diff != "" {
		t.Errorf("the first Set sent (-want +got):\n%s", diff)
	}

	sent := func(at time.Time) []wgtypes.PeerConfig {
		before := len(r.applied)
		r.dress(at)
		if len(r.applied) == before {
			return nil
		}
		return r.applied[before].Peers
	}
	if got := sent(time.Now()); got != nil {
		t.Errorf("dressed before due: %+v", got)
	}
	later := time.Now().Add(2 * time.Hour)
	dressed := []wgtypes.PeerConfig{{PublicKey: below(1), UpdateOnly: true, PersistentKeepaliveInterval: ptr(Keepalive)}}
	if diff := cmp.Diff(dressed, sent(later)); diff != "" {
		t.Errorf("when due, sent (-want +got):\n%s", diff)
	}
	if got := sent(later); got != nil {
		t.Errorf("dressed twice: %+v", got)
	}

	gone := Peer{PublicKey: below(2), AllowedIPs: prefixes("10.99.0.4/32")}
	if err := r.patch(Patch{Peers: []Peer{gone}}); err != nil {
		t.Fatal(err)
	}
	if err := r.patch(Patch{Remove: []Key{gone.PublicKey}}); err != nil {
		t.Fatal(err)
	}
	if got := sent(later); got != nil {
		t.Errorf("a peer removed before due was dressed: %+v", got)
	}

	changed := Peer{PublicKey: below(3), AllowedIPs: prefixes("10.99.0.5/32")}
	if err := r.patch(Patch{Peers: []Peer{changed}}); err != nil {
		t.Fatal(err)
	}
	changed.Endpoint = netip.MustParseAddrPort("198.51.100.5:51820")
	before := len(r.applied)
	if err := r.patch(Patch{Peers: []Peer{changed}}); err != nil {
		t.Fatal(err)
	}
	if got := r.applied[before].Peers; len(got) != 1 || *got[0].PersistentKeepaliveInterval != 0 {
		t.Errorf("a quiet peer's change sent %+v, want no keepalive yet", got)
	}

	r.fail = true
	sent(later)
	r.fail = false
	if got := sent(later); got != nil {
		t.Errorf("a failed dressing was tried again before quietFor: %+v", got)
	}
	dressed[0].PublicKey = below(3)
	if diff := cmp.Diff(dressed, sent(later.Add(2*time.Hour))); diff != "" {
		t.Errorf("after a failed dressing, sent (-want +got):\n%s", diff)
	}
}

// TestQuietStartTimer: the keepalive comes on its own when due, and not
// after stop.
func TestQuietStartTimer(t *testing.T) {
	setQuietFor(t, 20*time.Millisecond)
	private, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{PrivateKey: private, Peers: []Peer{{PublicKey: below(1), AllowedIPs: prefixes("10.99.0.2/32")}}}
	var mu sync.Mutex
	r := newRecorder()
	r.lock = &mu
	applied := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(r.applied)
	}
	mu.Lock()
	err = r.set(cfg)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); applied() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the quiet peer never got its keepalive")
		}
	}
	mu.Lock()
	if got := r.applied[1].Peers; len(got) != 1 || !got[0].UpdateOnly || *got[0].PersistentKeepaliveInterval != Keepalive {
		t.Errorf("dressed with %+v", got)
	}
	mu.Unlock()

	stopped := newRecorder()
	stopped.lock = &mu
	mu.Lock()
	err = stopped.set(cfg)
	stopped.stop()
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(stopped.applied) != 1 {
		t.Errorf("after stop, sent %+v", stopped.applied[1:])
	}
}

// initiations counts the handshake initiations a bind sends.
type initiations struct {
	conn.Bind
	n atomic.Int32
}

func (b *initiations) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		if isInitiation(p) {
			b.n.Add(1)
		}
	}
	return b.Bind.Send(bufs, ep)
}

// quietPair is two userspace engines whose binds count initiations, the
// keeper's public key the lower.
func quietPair(t *testing.T) (keeper, yielder *node, kept, yielded *initiations) {
	kept, yielded = &initiations{Bind: conn.NewDefaultBind()}, &initiations{Bind: conn.NewDefaultBind()}
	keeper, yielder = newNodeOn(t, "10.99.0.1", kept), newNodeOn(t, "10.99.0.2", yielded)
	if !yields(yielder.key.PublicKey(), keeper.key.PublicKey()) {
		keeper.key, yielder.key = yielder.key, keeper.key
	}
	return keeper, yielder, kept, yielded
}

// waitHandshake waits for both ends to have a session with the other.
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

// TestQuietStartPair: two engines given each other at once do not both
// initiate (which crosses, and costs the pair WireGuard's 5 s retry):
// the yielding end answers the other's initiation and sends none.
func TestQuietStartPair(t *testing.T) {
	setQuietFor(t, time.Minute)
	keeper, yielder, kept, yielded := quietPair(t)
	if err := keeper.Set(keeper.config(true, yielder)); err != nil {
		t.Fatal(err)
	}
	if err := yielder.Set(yielder.config(true, keeper)); err != nil {
		t.Fatal(err)
	}
	waitHandshake(t, keeper, yielder)
	if n := yielded.n.Load(); n != 0 {
		t.Errorf("the yielding end sent %d initiations", n)
	}
	if kept.n.Load() == 0 {
		t.Error("the handshake came with no initiation from the end that starts")
	}
	ping(t, keeper, yielder)
	ping(t, yielder, keeper)
}

// TestQuietStartAlone: a yielding end whose peer does not start (here:
// it has no endpoint for it) starts the handshake itself when quietFor
// is up, with no traffic to prompt it.
func TestQuietStartAlone(t *testing.T) {
	setQuietFor(t, 100*time.Millisecond)
	keeper, yielder, kept, yielded := quietPair(t)
	if err := keeper.Set(keeper.config(false, yielder)); err != nil {
		t.Fatal(err)
	}
	if err := yielder.Set(yielder.config(true, keeper)); err != nil {
		t.Fatal(err)
	}
	waitHandshake(t, keeper, yielder)
	if yielded.n.Load() == 0 || kept.n.Load() != 0 {
		t.Errorf("initiations: %d from the yielding end, %d from the other; want some, none", yielded.n.Load(), kept.n.Load())
	}
}

// TestQuietStartAsleep: a quiet peer held back from wireguard-go (see
// lazy.go) that gets its keepalive while asleep has it when woken.
func TestQuietStartAsleep(t *testing.T) {
	allLazy(t)
	setQuietFor(t, time.Hour)
	a := newNode(t, "10.99.0.1")
	_, gone := listener(t)
	ghost := Peer{PublicKey: below(1), Endpoint: gone, AllowedIPs: prefixes("10.99.0.3/32")}
	cfg := a.config(true)
	cfg.Peers = []Peer{ghost}
	if err := a.Set(cfg); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.state.dress(time.Now().Add(2 * time.Hour))
	a.mu.Unlock()
	if got := inDevice(t, a); len(got) != 0 {
		t.Fatalf("dressing an asleep peer gave wireguard-go %v", got)
	}
	a.tun.Outbound <- tuntest.Ping(netip.MustParseAddr("10.99.0.3"), a.addr)
	waitUntil(t, "a packet to wake the ghost", func() bool { return len(inDevice(t, a)) == 1 })
	if got := keepalive(t, a); got != "25" {
		t.Errorf("the woken ghost's keepalive is %q, want 25", got)
	}
}
