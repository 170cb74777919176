package wg

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/stun/stuntest"
)

// node is a userspace engine on a channel TUN, with real UDP sockets.
type node struct {
	*userspace
	tun  *tuntest.ChannelTUN
	nif  *fakeNetif
	key  Key
	addr netip.Addr
	// got is what came out of the TUN. A goroutine drains the TUN into it
	// and drops what does not fit: wireguard-go's receiver blocks on a
	// TUN write, and removing a peer waits for its receiver, so a stray
	// packet nobody reads (a ping's retransmission) would hang the test.
	got       chan []byte
	stopDrain func()
}

// Close closes the engine, then stops draining its TUN.
func (n *node) Close() error {
	err := n.userspace.Close()
	n.stopDrain()
	return err
}

func newNode(t *testing.T, addr string) *node {
	t.Helper()
	return newNodeOn(t, addr, conn.NewDefaultBind())
}

// newNodeOn is newNode with bind as wireguard-go's sockets.
func newNodeOn(t *testing.T, addr string, bind conn.Bind) *node {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{tun: tuntest.NewChannelTUN(), nif: &fakeNetif{}, key: k, addr: netip.MustParseAddr(addr), got: make(chan []byte, 16)}
	n.userspace, err = startUserspace(n.tun.TUN(), n.nif, bind, namespace{}, Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case b := <-n.tun.Inbound:
				select {
				case n.got <- b:
				default:
				}
			case <-stop:
				return
			}
		}
	}()
	n.stopDrain = sync.OnceFunc(func() { close(stop); <-drained })
	t.Cleanup(func() { n.Close() })
	return n
}

func (n *node) endpoint() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.Port()))
}

// config is n's Config with peers as its peers, reached at their
// loopback endpoint if withEndpoint.
func (n *node) config(withEndpoint bool, peers ...*node) Config {
	cfg := Config{PrivateKey: n.key, Address: netip.PrefixFrom(n.addr, 16)}
	for _, p := range peers {
		peer := Peer{PublicKey: p.key.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(p.addr, 32)}}
		if withEndpoint {
			peer.Endpoint = p.endpoint()
		}
		cfg.Peers = append(cfg.Peers, peer)
	}
	return cfg
}

// ping sends a packet into from's TUN until it comes out of to's. The
// deadline allows for WireGuard's 5 s handshake retries on a loaded
// machine (CI runs the lab beside these tests).
func ping(t *testing.T, from, to *node) {
	t.Helper()
	msg := tuntest.Ping(to.addr, from.addr)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case from.tun.Outbound <- msg:
		case <-deadline:
			t.Fatalf("%v never reached %v through the tunnel", from.addr, to.addr)
		}
		select {
		case got := <-to.got:
			if !bytes.Equal(got, msg) {
				t.Fatalf("%v received %x, want %x", to.addr, got, msg)
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%v never reached %v through the tunnel", from.addr, to.addr)
		}
	}
}

func peerOf(t *testing.T, e Engine, k Key) PeerStatus {
	t.Helper()
	peers, err := e.Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.PublicKey == k {
			return p
		}
	}
	t.Fatalf("%s has no peer %v (it has %+v)", e.Name(), k, peers)
	return PeerStatus{}
}

// TestUserspaceLoopback runs two userspace engines over loopback, without
// root: a tunnel comes up, Peers tells, an unchanged Set keeps the session
// and the roamed endpoint, Discover works while the tunnel runs, and
// removing the peer removes it.
func TestUserspaceLoopback(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	if err := a.Set(a.config(true, b)); err != nil {
		t.Fatal(err)
	}
	// b does not know where a is: it learns from a's handshake.
	if err := b.Set(b.config(false, a)); err != nil {
		t.Fatal(err)
	}
	ping(t, a, b)
	ping(t, b, a)

	ab := peerOf(t, a, b.key.PublicKey())
	if ab.LastHandshake.IsZero() || ab.TxBytes == 0 || ab.RxBytes == 0 || ab.Endpoint != b.endpoint() {
		t.Errorf("a's peer b = %+v; want a handshake, traffic both ways and endpoint %v", ab, b.endpoint())
	}
	ba := peerOf(t, b, a.key.PublicKey())
	if ba.Endpoint != a.endpoint() {
		t.Errorf("b's peer a has endpoint %v, want the roamed %v", ba.Endpoint, a.endpoint())
	}
	if got := b.nif.took(); len(got) != 2 || got[0] != "up" {
		t.Errorf("b's interface calls = %q, want up then an address", got)
	}

	if err := b.Set(b.config(false, a)); err != nil {
		t.Fatal(err)
	}
	if again := peerOf(t, b, a.key.PublicKey()); again.Endpoint != ba.Endpoint || !again.LastHandshake.Equal(ba.LastHandshake) {
		t.Errorf("after the same Set, b's peer a = %+v, want it untouched: %+v", again, ba)
	}
	if got := b.nif.took(); len(got) != 0 {
		t.Errorf("the same Set did %q to the interface, want nothing", got)
	}

	t.Run("discover", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if got, err := a.Discover(ctx, stuntest.Serve(t).AddrPort()); err != nil || got != a.endpoint() {
			t.Errorf("Discover = %v, %v; want %v", got, err, a.endpoint())
		}
		ping(t, a, b) // the tunnel still works
	})

	if err := b.Set(b.config(false)); err != nil {
		t.Fatal(err)
	}
	if peers, err := b.Peers(); err != nil || len(peers) != 0 {
		t.Errorf("after removing a, b's peers = %+v, %v; want none", peers, err)
	}

	closeTwice(t, a)
	closeTwice(t, b)
	if got := b.nif.took(); len(got) != 1 || got[0] != "remove" {
		t.Errorf("b's interface calls from Close = %q, want remove", got)
	}
	checkGoroutines(t, goroutines)
}

func closeTwice(t *testing.T, e Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Errorf("Close %s: %v", e.Name(), err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close %s: %v", e.Name(), err)
	}
	if err := e.Set(Config{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Set after Close: %v, want %v", err, net.ErrClosed)
	}
	if _, err := e.Peers(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Peers after Close: %v, want %v", err, net.ErrClosed)
	}
}

// checkGoroutines waits for the goroutines started since there were n to
// end.
func checkGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left running, had %d before:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUserspacePortInUse(t *testing.T) {
	taken, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	opts := Options{ListenPort: taken.LocalAddr().(*net.UDPAddr).Port}.withDefaults()
	ct := tuntest.NewChannelTUN()
	e, err := startUserspace(ct.TUN(), &fakeNetif{}, conn.NewDefaultBind(), namespace{}, opts)
	if err == nil {
		e.Close()
		t.Fatalf("engine started on port %d, which is taken", opts.ListenPort)
	}
	t.Log(err)
}

// TestUserspacePortChange moves the port onto a taken one: Set fails, and
// a later Set that leaves the port alone tries that port again, which
// works once it is free.
func TestUserspacePortChange(t *testing.T) {
	n := newNode(t, "10.99.0.1")
	taken, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	port := taken.LocalAddr().(*net.UDPAddr).Port
	cfg := n.config(false)
	cfg.ListenPort = port
	if err := n.Set(cfg); err == nil {
		t.Fatalf("Set moved the port onto %d, which is taken", port)
	}
	taken.Close()
	cfg.ListenPort = 0
	if err := n.Set(cfg); err != nil {
		t.Fatalf("Set after the port was freed: %v", err)
	}
	if n.Port() != port {
		t.Errorf("Port = %d, want %d", n.Port(), port)
	}
	if err := n.Set(cfg); err != nil || n.Port() != port {
		t.Errorf("Set again = %v, port %d; want the port kept", err, n.Port())
	}
}
