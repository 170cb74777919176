package wg

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/relay/relaytest"
	"github.com/wire-mesh/wire/stun/stuntest"
)

// fakeClient is wgctrl for one kernel interface, in memory. Tests that
// have the engine call it from another goroutine read it with calls. It
// fails the test given a configuration that names a key twice: wgctrl
// gives such a key's endpoint and keepalive to its first entry only, once
// it splits a configuration into a message per peer.
type fakeClient struct {
	t          testing.TB
	mu         sync.Mutex
	configured []wgtypes.Config
	fail       error
	refuse     []bool // for the next calls: fail with errFake; then fail applies
	device     wgtypes.Device
	dumps      int // calls of Device
	closed     int
}

func (c *fakeClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.configured = append(c.configured, cfg)
	seen := map[wgtypes.Key]bool{}
	for _, p := range cfg.Peers {
		if seen[p.PublicKey] && c.t != nil {
			c.t.Errorf("a configuration names %v twice: %+v", p.PublicKey, cfg)
		}
		seen[p.PublicKey] = true
	}
	if len(c.refuse) > 0 {
		refuse := c.refuse[0]
		c.refuse = c.refuse[1:]
		if refuse {
			return errFake
		}
		return nil
	}
	return c.fail
}

func (c *fakeClient) Device(name string) (*wgtypes.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dumps++
	d := c.device
	d.Name = name
	return &d, nil
}

// calls is how many configurations the client has taken.
func (c *fakeClient) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.configured)
}

func (c *fakeClient) Close() error { c.closed++; return nil }

func newFakeKernel(t *testing.T, port int) (*kernel, *fakeClient, *fakeNetif) {
	t.Helper()
	e, client, nif, _ := newFilteredFakeKernel(t, port)
	return e, client, nif
}

// TestKernelSet follows a kernel engine through a series of Sets: what
// reaches wgctrl and the interface at each step.
func TestKernelSet(t *testing.T) {
	e, client, nif := newFakeKernel(t, 0)
	if got := nif.took(); len(got) != 0 {
		t.Fatalf("New did %q to the interface, want nothing before the first Set", got)
	}
	port := e.Port()
	if port == 0 {
		t.Fatal("no listen port chosen")
	}
	noPort := with(func(c *Config) { c.ListenPort = 0 })
	steps := []struct {
		name  string
		cfg   Config
		want  *wgtypes.Config // nil: wgctrl not called
		iface []string
	}{
		{
			name:  "first",
			cfg:   noPort,
			want:  &wgtypes.Config{PrivateKey: ptr(key(1)), ListenPort: ptr(port), Peers: []wgtypes.PeerConfig{sendB, sendC}},
			iface: []string{"address invalid Prefix -> 10.99.0.1/16", "up"},
		},
		{name: "same again", cfg: noPort},
		{name: "same with the port spelled out", cfg: with(func(c *Config) { c.ListenPort = port })},
		{
			name: "peer removed",
			cfg:  with(func(c *Config) { c.ListenPort = 0; c.Peers = c.Peers[:1] }),
			want: &wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(3), Remove: true}}},
		},
		{
			name: "new port and address",
			cfg: with(func(c *Config) {
				c.ListenPort = 4242
				c.Peers = c.Peers[:1]
				c.Address = netip.MustParsePrefix("10.99.0.9/16")
			}),
			want:  &wgtypes.Config{ListenPort: ptr(4242)},
			iface: []string{"address 10.99.0.1/16 -> 10.99.0.9/16"},
		},
	}
	for _, s := range steps {
		before := len(client.configured)
		if err := e.Set(s.cfg); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var got *wgtypes.Config
		switch len(client.configured) - before {
		case 0:
		case 1:
			got = &client.configured[before]
		default:
			t.Fatalf("%s: wgctrl called %d times", s.name, len(client.configured)-before)
		}
		if d := cmp.Diff(s.want, got, cmp.Comparer(sameIPNet)); d != "" {
			t.Errorf("%s: wgctrl got (-want +got):\n%s", s.name, d)
		}
		if d := cmp.Diff(s.iface, nif.took()); d != "" {
			t.Errorf("%s: interface calls (-want +got):\n%s", s.name, d)
		}
	}
	if e.Port() != 4242 {
		t.Errorf("Port = %d after setting 4242", e.Port())
	}
}

func TestKernelSetFails(t *testing.T) {
	e, client, _ := newFakeKernel(t, 51820)
	client.fail = unix.EINVAL
	if err := e.Set(base); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Set = %v, want %v", err, unix.EINVAL)
	}
	client.fail = nil
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	if len(client.configured) != 2 || client.configured[1].PrivateKey == nil {
		t.Errorf("after a failure, Set sent %+v; want everything again", client.configured[1:])
	}
}

// TestKernelDiscover checks that Discover reports the mapping of the port
// WireGuard will use, before WireGuard holds that port and after (through
// raw sockets, given the privilege; else it says why not).
func TestKernelDiscover(t *testing.T) {
	e, _, _ := newFakeKernel(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := stuntest.Serve(t).AddrPort()
	got, err := e.Discover(ctx, srv)
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.Port())); err != nil || got != want {
		t.Errorf("Discover before Set = %v, %v; want %v", got, err, want)
	}
	if _, err := e.Discover(ctx, srv); err != nil {
		t.Errorf("second Discover before Set: %v (was the port left open?)", err)
	}
	if _, err := e.Probe(ctx, srv); err == nil {
		t.Error("Probe before Set succeeded")
	}
	// The fake holds no port: a socket holds it, as WireGuard would.
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: e.Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := e.Set(Config{}); err != nil {
		t.Fatal(err)
	}
	got, err = e.Discover(ctx, srv)
	if os.Geteuid() != 0 {
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
			t.Errorf("Discover after Set, unprivileged: %v; want %v, saying CAP_NET_RAW is needed", err, errors.ErrUnsupported)
		}
		return
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.Port())); err != nil || got != want {
		t.Errorf("Discover after Set = %v, %v; want %v", got, err, want)
	}
}

func TestKernelDiscoverPortTaken(t *testing.T) {
	taken, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	e, _, _ := newFakeKernel(t, taken.LocalAddr().(*net.UDPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := e.Discover(ctx, stuntest.Serve(t).AddrPort()); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("Discover on a taken port: %v, want %v", err, unix.EADDRINUSE)
	}
}

func TestKernelPeers(t *testing.T) {
	e, client, _ := newFakeKernel(t, 51820)
	handshake := time.Unix(1700000000, 5)
	client.device.Peers = []wgtypes.Peer{{
		PublicKey:         key(3),
		LastHandshakeTime: time.Unix(0, 0), // what the kernel says for never
	}, {
		PublicKey:         key(2),
		Endpoint:          &net.UDPAddr{IP: net.ParseIP("198.51.100.2"), Port: 51820},
		LastHandshakeTime: handshake,
		ReceiveBytes:      10,
		TransmitBytes:     20,
	}}
	got, err := e.Peers()
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerStatus{
		{PublicKey: key(2), Endpoint: netip.MustParseAddrPort("198.51.100.2:51820"), LastHandshake: handshake, RxBytes: 10, TxBytes: 20},
		{PublicKey: key(3)},
	}
	if d := cmp.Diff(want, got, netipComparable); d != "" {
		t.Errorf("Peers (-want +got):\n%s", d)
	}
}

func TestKernelClose(t *testing.T) {
	e, client, nif := newFakeKernel(t, 51820)
	nif.took()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := nif.took(); client.closed != 1 || len(got) != 1 || got[0] != "remove" {
		t.Errorf("Close twice: wgctrl closed %d times, interface calls %q; want once, remove", client.closed, got)
	}
	if err := e.Set(base); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Set after Close: %v, want %v", err, net.ErrClosed)
	}
	if _, err := e.Discover(context.Background(), netip.MustParseAddrPort("127.0.0.1:3478")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Discover after Close: %v, want %v", err, net.ErrClosed)
	}
}

// TestKernelRelay: a peer with a relay endpoint is configured with its
// proxy socket on 127.0.0.1, which Peers reports as the relay endpoint,
// and whose socket closes when the peer goes.
func TestKernelRelay(t *testing.T) {
	e, client, _ := newFakeKernel(t, 0)
	vpnB := netip.MustParseAddr("10.99.0.2")
	relayed := with(func(c *Config) { c.Peers[0].Endpoint = RelayEndpoint(vpnB) })
	if err := e.Set(relayed); err != nil {
		t.Fatal(err)
	}
	if got := relayed.Peers[0].Endpoint; got != RelayEndpoint(vpnB) {
		t.Errorf("Set changed the caller's config: endpoint %v", got)
	}
	if len(client.configured) != 1 || len(client.configured[0].Peers) != 2 {
		t.Fatalf("wgctrl got %+v, want one config of two peers", client.configured)
	}
	sent := client.configured[0].Peers[0]
	if sent.Endpoint == nil {
		t.Fatal("peer B configured without an endpoint")
	}
	proxyB := unmap(sent.Endpoint.AddrPort())
	if proxyB.Addr() != netip.MustParseAddr("127.0.0.1") || proxyB.Port() == 0 {
		t.Fatalf("peer B's endpoint is %v, want 127.0.0.1:<proxy port>", proxyB)
	}
	want := sendB
	want.Endpoint = net.UDPAddrFromAddrPort(proxyB)
	if d := cmp.Diff(want, sent, cmp.Comparer(sameIPNet)); d != "" {
		t.Errorf("peer B (-want +got):\n%s", d)
	}
	if isClosed(t, proxyB) {
		t.Fatalf("nothing listens on B's proxy endpoint %v", proxyB)
	}

	// The same config again changes nothing: the socket stays.
	if err := e.Set(relayed); err != nil {
		t.Fatal(err)
	}
	if len(client.configured) != 1 {
		t.Errorf("the same config again sent %+v", client.configured[1:])
	}

	client.device.Peers = []wgtypes.Peer{{PublicKey: key(2), Endpoint: net.UDPAddrFromAddrPort(proxyB)}}
	peers, err := e.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].Endpoint != RelayEndpoint(vpnB) {
		t.Errorf("Peers = %+v, want B at %v", peers, RelayEndpoint(vpnB))
	}

	// A peer that relays to us unasked keeps its socket while a peer with
	// its address is configured (here C, direct).
	vpnC := netip.MustParseAddr("10.99.0.3")
	proxyC, err := e.proxy.endpoint(vpnC)
	if err != nil {
		t.Fatal(err)
	}

	// B moves to a direct endpoint: its socket stays, as WireGuard may
	// roam back to it; B removed: its socket closes.
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	if got := client.configured[len(client.configured)-1].Peers; len(got) != 1 || got[0].Endpoint.String() != "198.51.100.2:51820" {
		t.Errorf("moving B to direct sent %+v", got)
	}
	if isClosed(t, proxyB) || isClosed(t, proxyC) {
		t.Errorf("a proxy socket closed while its peer is configured")
	}
	if err := e.Set(with(func(c *Config) { c.Peers = c.Peers[1:] })); err != nil {
		t.Fatal(err)
	}
	if !isClosed(t, proxyB) {
		t.Errorf("B's proxy socket %v still open after B was removed", proxyB)
	}
	if isClosed(t, proxyC) {
		t.Errorf("C's proxy socket %v closed while C is configured", proxyC)
	}
	if err := e.Set(Config{}); err != nil {
		t.Fatal(err)
	}
	if !isClosed(t, proxyC) {
		t.Errorf("C's proxy socket %v still open after C was removed", proxyC)
	}
	if err := e.SetRelay(nil); err != nil {
		t.Errorf("SetRelay(nil) = %v", err)
	}
}

// TestKernelRelayForwards runs a kernel engine whose fake WireGuard is a
// UDP socket on its listen port, with a real relay: the engine's relay
// connection is read, and packets go both ways between WireGuard and a
// peer through the relay.
func TestKernelRelayForwards(t *testing.T) {
	r := relaytest.Serve(t)
	wgSock := listenLoopback(t)
	e, _, _ := newFakeKernel(t, wgSock.LocalAddr().(*net.UDPAddr).Port)
	vpnA, vpnB := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	connA, err := relay.NewConn(pc, relay.Config{Relay: r.Addr, VPNIP: vpnA, Token: r.Tokens.Add(vpnA)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		connA.Close()
		waitGroup(t, &e.proxy.pumps, "the pump")
	})
	if err := e.SetRelay(connA); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := connA.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	connB, fromRelayB := r.Dial(t, vpnB)
	if err := e.Set(with(func(c *Config) { c.ListenPort = 0; c.Peers[0].Endpoint = RelayEndpoint(vpnB) })); err != nil {
		t.Fatal(err)
	}
	proxyB, err := e.proxy.endpoint(vpnB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wgSock.WriteToUDPAddrPort([]byte("to B"), proxyB); err != nil {
		t.Fatal(err)
	}
	if p := receive(t, fromRelayB, "B"); p.From != vpnA || string(p.Payload) != "to B" {
		t.Errorf("B got %q from %v, want %q from %v", p.Payload, p.From, "to B", vpnA)
	}
	if err := connB.WriteTo([]byte("to A"), vpnA); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	wgSock.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := wgSock.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "to A" || from != proxyB {
		t.Errorf("WireGuard got %q from %v (%v), want %q from %v", buf[:n], from, err, "to A", proxyB)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosed(t, proxyB) {
		t.Errorf("B's proxy socket %v still open after Close", proxyB)
	}
	if err := e.SetRelay(connA); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetRelay after Close = %v, want %v", err, net.ErrClosed)
	}
}

// A relayed peer that takes a new WireGuard key keeps its proxy socket
// through the Patch that swaps the keys; a removed peer's socket closes.
func TestKernelPatchKeepsProxy(t *testing.T) {
	e, client, _ := newFakeKernel(t, 0)
	vpnB := netip.MustParseAddr("10.99.0.2")
	if err := e.Set(with(func(c *Config) { c.Peers[0].Endpoint = RelayEndpoint(vpnB) })); err != nil {
		t.Fatal(err)
	}
	proxyB := unmap(client.configured[0].Peers[0].Endpoint.AddrPort())
	rekeyed := Peer{PublicKey: key(9), Endpoint: RelayEndpoint(vpnB), AllowedIPs: prefixes("10.99.0.2/32")}
	if err := e.Patch(Patch{Peers: []Peer{rekeyed}, Remove: []Key{key(2)}}); err != nil {
		t.Fatal(err)
	}
	last := client.configured[len(client.configured)-1]
	var sent *wgtypes.PeerConfig
	for i := range last.Peers {
		if last.Peers[i].PublicKey == key(9) {
			sent = &last.Peers[i]
		}
	}
	if sent == nil || sent.Endpoint == nil || unmap(sent.Endpoint.AddrPort()) != proxyB {
		t.Fatalf("the new key was sent as %+v, want it at B's proxy %v", sent, proxyB)
	}
	if isClosed(t, proxyB) {
		t.Fatal("the Patch closed the proxy socket the new key uses")
	}
	if err := e.Patch(Patch{Remove: []Key{key(9)}}); err != nil {
		t.Fatal(err)
	}
	if !isClosed(t, proxyB) {
		t.Error("the removed peer's proxy socket is still open")
	}
}

// signed is the handshake message b with a mac1 for the holder of
// private, as a peer makes it.
func signed(b []byte, private Key) []byte {
	off := offMAC1
	if b[0] == msgResponse {
		off = responseMAC1
	}
	k := mac1Key(private.PublicKey())
	mac, _ := blake2s.New128(k[:])
	mac.Write(b[:off])
	mac.Sum(b[:off])
	return b
}

// TestKernelInitiatesAgain: the kernel engine, seeing in what reaches its
// port that its initiation to a peer crossed the peer's and should have
// won, makes WireGuard initiate again at once by removing the peer and
// adding it back; in every other case it leaves WireGuard alone.
func TestKernelInitiatesAgain(t *testing.T) {
	ours := func(b []byte) []byte { return signed(b, key(1)) }
	crossed := [][]byte{ours(initiation(9)), ours(response(5, 3))}
	removeB := wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(2), Remove: true}}}
	addB := wgtypes.Config{Peers: []wgtypes.PeerConfig{peerConfig(peerB, true)}}
	again := []wgtypes.Config{removeB, addB}
	failed := errors.New("netlink: no buffer space")
	vpnB := netip.MustParseAddr("10.99.0.2")
	tests := []struct {
		name      string
		relayed   bool // B is relayed, and the messages come from its proxy socket
		from      netip.AddrPort
		msgs      [][]byte
		then      [][]byte      // after WireGuard was configured for msgs
		handshake time.Duration // how long ago B's last handshake was; 0: never
		fail      error         // of wgctrl
		refuse    []bool        // fakeClient.refuse
		close     bool          // the engine closes as soon as it has the messages
		want      []wgtypes.Config
		forgot    bool // the engine no longer knows what WireGuard has
	}{
		{name: "crossed, ours wins", msgs: crossed, want: again},
		{name: "crossed, theirs wins", msgs: [][]byte{ours(initiation(2)), ours(response(5, 3))}},
		{name: "answered first: a handshake", msgs: [][]byte{ours(response(5, 3)), ours(initiation(9))}},
		{name: "not meant for our key", msgs: [][]byte{initiation(9), response(5, 3)}},
		{name: "a crossing of rekeys, with a session", msgs: crossed, handshake: time.Minute},
		{name: "the session is over", msgs: crossed, handshake: rejectAfterTime + time.Minute, want: again},
		{name: "from no peer's endpoint", from: netip.MustParseAddrPort("198.51.100.9:51820"), msgs: crossed},
		{name: "relayed: the proxy's", relayed: true, msgs: crossed},
		{name: "crossed twice: once per REKEY_TIMEOUT", msgs: crossed, then: [][]byte{ours(initiation(8)), ours(response(6, 4))}, want: again},
		{name: "closed meanwhile", msgs: crossed, close: true},
		{name: "WireGuard refuses", msgs: crossed, fail: failed, forgot: true, want: []wgtypes.Config{removeB, addB}},
		{name: "WireGuard refuses the removal", msgs: crossed, refuse: []bool{true}, want: []wgtypes.Config{removeB, addB}},
		{name: "WireGuard refuses the add, once", msgs: crossed, refuse: []bool{false, true}, want: []wgtypes.Config{removeB, addB, addB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, client, _ := newFakeKernel(t, 0)
			clock := useFakeTime(e)
			cfg := base
			if tt.relayed {
				cfg = with(func(c *Config) { c.Peers[0].Endpoint = RelayEndpoint(vpnB) })
			}
			if err := e.Set(cfg); err != nil {
				t.Fatal(err)
			}
			from := tt.from
			if !from.IsValid() {
				from = peerB.Endpoint
			}
			if tt.relayed {
				var err error
				if from, err = e.proxy.endpoint(vpnB); err != nil {
					t.Fatal(err)
				}
			}
			client.mu.Lock()
			if tt.handshake != 0 {
				client.device.Peers = []wgtypes.Peer{{PublicKey: key(2), LastHandshakeTime: clock.Now().Add(-tt.handshake)}}
			}
			client.fail, client.refuse = tt.fail, tt.refuse
			before := len(client.configured)
			client.mu.Unlock()
			for _, m := range tt.msgs {
				e.handshake(m, from)
			}
			if tt.then != nil {
				clock.advance(initiateWait)
				for _, m := range tt.then {
					e.handshake(m, from)
				}
			}
			if tt.close {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			clock.advance(2 * initiateWait)
			client.mu.Lock()
			got := client.configured[before:]
			client.mu.Unlock()
			if tt.close {
				got = slices.DeleteFunc(got, func(c wgtypes.Config) bool { return c.Peers == nil }) // Close's own
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(sameIPNet), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("WireGuard got (-want +got):\n%s", d)
			}
			if forgot := forgotten(e, key(2)); forgot != tt.forgot {
				t.Errorf("the engine forgot what WireGuard has: %v, want %v", forgot, tt.forgot)
			}
		})
	}
}

// TestKernelInitiatesAgainToAPeerAddedAgain: once per REKEY_TIMEOUT holds
// for a peer as long as WireGuard has it; one removed and added again (as
// a policy does that keeps two nodes apart for a while, or the daemon
// after a re-add WireGuard refused) may have its crossing resolved at
// once.
func TestKernelInitiatesAgainToAPeerAddedAgain(t *testing.T) {
	e, client, _ := newFakeKernel(t, 0)
	clock := useFakeTime(e)
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	crossing := func(theirs, ours uint32) {
		t.Helper()
		before := client.calls()
		e.handshake(signed(initiation(theirs), key(1)), peerB.Endpoint)
		e.handshake(signed(response(theirs+1, ours), key(1)), peerB.Endpoint)
		clock.advance(initiateWait)
		if client.calls() == before {
			t.Fatal("WireGuard was not made to initiate again")
		}
	}
	// Lost to a re-add that WireGuard refused, and added again by the
	// daemon's next Set, which the lost peer makes a whole one.
	client.mu.Lock()
	client.fail = errFake
	client.mu.Unlock()
	crossing(9, 3)
	if !forgotten(e, key(2)) {
		t.Fatal("WireGuard refused the re-add, and the engine still takes it to have the peer")
	}
	client.mu.Lock()
	client.fail = nil
	client.mu.Unlock()
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	crossing(19, 13)
	if err := e.Patch(Patch{Remove: []Key{key(2)}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Patch(Patch{Peers: []Peer{peerB}}); err != nil {
		t.Fatal(err)
	}
	crossing(29, 23)
	if err := e.Set(with(func(c *Config) { c.Peers = c.Peers[1:] })); err != nil {
		t.Fatal(err)
	}
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	crossing(39, 33)
}

// TestKernelInitiatesAgainAtOnce: crossings with several peers, as a node
// that joins a mesh sees them, are resolved together, with one look at
// WireGuard's peers, the removals in one configuration and the adds in
// another; if WireGuard refuses the removals, the adds bring every peer
// back.
func TestKernelInitiatesAgainAtOnce(t *testing.T) {
	withC := peerC
	withC.Endpoint = netip.MustParseAddrPort("198.51.100.3:51820")
	remove := wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(2), Remove: true}, {PublicKey: key(3), Remove: true}}}
	add := wgtypes.Config{Peers: []wgtypes.PeerConfig{peerConfig(peerB, true), peerConfig(withC, true)}}
	for _, tt := range []struct {
		name   string
		refuse []bool
		want   []wgtypes.Config
	}{
		{"", nil, []wgtypes.Config{remove, add}},
		{"removals refused", []bool{true}, []wgtypes.Config{remove, add}},
		{"adds refused once", []bool{false, true}, []wgtypes.Config{remove, add, add}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, client, _ := newFakeKernel(t, 0)
			clock := useFakeTime(e)
			if err := e.Set(with(func(c *Config) { c.Peers[1] = withC })); err != nil {
				t.Fatal(err)
			}
			client.mu.Lock()
			before, dumps := len(client.configured), client.dumps
			client.refuse = tt.refuse
			client.mu.Unlock()
			for i, ep := range []netip.AddrPort{withC.Endpoint, peerB.Endpoint} {
				e.handshake(signed(initiation(uint32(100+i)), key(1)), ep)
				e.handshake(signed(response(7, uint32(i)), key(1)), ep)
			}
			clock.advance(2 * initiateWait)
			client.mu.Lock()
			got, dumped := client.configured[before:], client.dumps-dumps
			client.mu.Unlock()
			if d := cmp.Diff(tt.want, got, cmp.Comparer(sameIPNet)); d != "" {
				t.Errorf("WireGuard got (-want +got):\n%s", d)
			}
			if dumped != 1 {
				t.Errorf("WireGuard's peers were read %d times, want once", dumped)
			}
			if forgotten(e, key(2)) || forgotten(e, key(3)) {
				t.Error("the engine forgot what WireGuard has, which it has again")
			}
		})
	}
}

// TestDue: each crossing waits its own initiateWait from when it was seen
// (less batchSlack), whatever came before it, and a pass takes at most
// passMax; the next pass is due when the first of those left is.
func TestDue(t *testing.T) {
	now := time.Unix(1000, 0)
	ep := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 51820)
	}
	ms := time.Millisecond
	tests := []struct {
		name string
		seen []time.Duration // how long before now each endpoint's crossing was seen
		took int
		next time.Duration // untilDue after
	}{
		{"none", nil, 0, 0},
		{"due", []time.Duration{initiateWait}, 1, 0},
		{"one due, one seen since", []time.Duration{initiateWait + ms, 10 * ms}, 1, initiateWait - 10*ms},
		{"due with one due", []time.Duration{initiateWait, initiateWait - batchSlack}, 2, 0},
		{"not yet", []time.Duration{initiateWait - batchSlack - ms}, 0, batchSlack + ms},
		{"the first of those left", []time.Duration{10 * ms, 20 * ms, 5 * ms}, 0, initiateWait - 20*ms},
		{"a pass, and two not yet", append(slices.Repeat([]time.Duration{time.Second}, passMax), 30*ms, 5*ms), passMax, initiateWait - 30*ms},
		{"more than a pass, all due", slices.Repeat([]time.Duration{time.Second}, passMax+10), passMax, ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crossed := map[netip.AddrPort]time.Time{}
			for i, ago := range tt.seen {
				crossed[ep(i)] = now.Add(-ago)
			}
			took := due(crossed, now)
			next := untilDue(crossed, now)
			if len(took) != tt.took || len(crossed) != len(tt.seen)-tt.took || next != tt.next {
				t.Errorf("took %d, left %d, next in %v; want %d, %d, %v", len(took), len(crossed), next, tt.took, len(tt.seen)-tt.took, tt.next)
			}
			for ep := range took {
				if _, ok := crossed[ep]; ok {
					t.Errorf("%v was taken and is still there", ep)
				}
			}
		})
	}
}

// forgotten says whether e no longer knows what WireGuard has of peer k.
func forgotten(e *kernel, k Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.state.peers[k]
	return ok && len(p.AllowedIPs) == 1 && p.AllowedIPs[0] == netip.Prefix{}
}

// fakeTime is a kernel engine's clock and timers, moved on by the test: a
// timer's function runs when the clock passes it, on the test's goroutine,
// so that what a test sees happen (or not) cannot depend on how loaded
// the machine is.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

// useFakeTime gives e a fakeTime.
func useFakeTime(e *kernel) *fakeTime {
	ft := &fakeTime{now: time.Unix(1_000_000, 0)}
	e.now, e.after = ft.Now, ft.AfterFunc
	return ft
}

func (ft *fakeTime) Now() time.Time {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.now
}

func (ft *fakeTime) AfterFunc(d time.Duration, f func()) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.timers = append(ft.timers, fakeTimer{ft.now.Add(d), f})
}

// advance moves the clock on by d, running the timers due on the way in
// their order, and those they set that are due by then.
func (ft *fakeTime) advance(d time.Duration) {
	ft.mu.Lock()
	end := ft.now.Add(d)
	ft.mu.Unlock()
	for {
		ft.mu.Lock()
		first := -1
		for i, t := range ft.timers {
			if !t.at.After(end) && (first < 0 || t.at.Before(ft.timers[first].at)) {
				first = i
			}
		}
		if first < 0 {
			ft.now = end
			ft.mu.Unlock()
			return
		}
		t := ft.timers[first]
		ft.timers = slices.Delete(ft.timers, first, first+1)
		ft.now = t.at
		ft.mu.Unlock()
		t.f()
	}
}

// TestKernelCrossingsBounded: however many crossings arrive at once, at
// most crossedMax wait to be resolved.
func TestKernelCrossingsBounded(t *testing.T) {
	e, _, _ := newFakeKernel(t, 0)
	useFakeTime(e)
	if err := e.Set(base); err != nil {
		t.Fatal(err)
	}
	first, answer := signed(initiation(9), key(1)), signed(response(5, 3), key(1))
	for i := range crossedMax + 10 {
		ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 51820)
		e.handshake(first, ep)
		e.handshake(answer, ep)
	}
	e.crossedMu.Lock()
	defer e.crossedMu.Unlock()
	if n := len(e.crossed); n != crossedMax {
		t.Errorf("%d crossings wait, want %d", n, crossedMax)
	}
}
