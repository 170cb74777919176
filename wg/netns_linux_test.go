package wg_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/internal/roottest"
	"github.com/wire-mesh/wire/stun"
	"github.com/wire-mesh/wire/wg"
)

// The test's namespaces are named wgt<pid><letter>.
var ours = regexp.MustCompile(`^wgt([0-9]+)[a-z]$`)

func prefix() string { return fmt.Sprintf("wgt%d", os.Getpid()) }

// netNS is a named network namespace that the test created.
type netNS struct {
	name string
	h    netns.NsHandle
	nl   *rtnetlink.Conn
}

// in runs fn on a thread of its own inside n; the thread is never given
// back, so no other goroutine ever runs in n by accident.
func (n *netNS) in(t *testing.T, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.h); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	if err := <-done; err != nil {
		t.Fatalf("in %s: %v", n.name, err)
	}
}

func newNetNS(t *testing.T, name string) *netNS {
	t.Helper()
	n := &netNS{name: name}
	done := make(chan error, 1)
	go func() { // NewNamed moves its thread into the namespace: let it die
		runtime.LockOSThread()
		var err error
		n.h, err = netns.NewNamed(name)
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("create network namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		n.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("remove network namespace %s: %v", name, err)
		}
	})
	var err error
	if n.nl, err = rtnetlink.Dial(&netlink.Config{NetNS: int(n.h)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.nl.Close() })
	return n
}

// index returns the index of the link name in n; ENODEV if there is none.
func (n *netNS) index(name string) (uint32, error) {
	links, err := n.nl.Link.List()
	if err != nil {
		return 0, err
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == name {
			return l.Index, nil
		}
	}
	return 0, unix.ENODEV
}

// addr adds prefix to the link name in n and brings it up.
func (n *netNS) addr(t *testing.T, name, prefix string) {
	t.Helper()
	index, err := n.index(name)
	if err != nil {
		t.Fatalf("in %s: %s: %v", n.name, name, err)
	}
	p := netip.MustParsePrefix(prefix)
	ip := net.IP(p.Addr().AsSlice())
	err = n.nl.Address.New(&rtnetlink.AddressMessage{
		Family: unix.AF_INET, PrefixLength: uint8(p.Bits()), Index: index,
		Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	})
	if err != nil {
		t.Fatalf("in %s: add %s to %s: %v", n.name, prefix, name, err)
	}
	if err := n.nl.Link.Set(&rtnetlink.LinkMessage{Index: index, Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		t.Fatal(err)
	}
}

// joinVeth joins a and b with a veth pair: a is 198.51.100.1, b .2.
func joinVeth(t *testing.T, a, b *netNS) {
	t.Helper()
	err := a.nl.Link.New(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
		Name: "veth0",
		Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{PeerInfo: &rtnetlink.LinkMessage{
			Attributes: &rtnetlink.LinkAttributes{Name: "veth1", NetNS: rtnetlink.NetNSForFD(uint32(b.h))},
		}}},
	}})
	if err != nil {
		t.Fatalf("create veth pair: %v", err)
	}
	a.addr(t, "veth0", "198.51.100.1/24")
	b.addr(t, "veth1", "198.51.100.2/24")
}

// engine creates a userspace engine inside n. The test fails if the
// engine or wireguard-go logs an error (but the one for a peer that has no
// endpoint yet), and shows the whole log if it fails.
func (n *netNS) engine(t *testing.T, name string) wg.Engine {
	t.Helper()
	var e wg.Engine
	logs := &syncLog{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n.in(t, func() (err error) {
		e, err = wg.New(wg.Options{Name: name, Kind: wg.KindUserspace, Logger: log})
		return err
	})
	t.Cleanup(func() {
		e.Close()
		s := logs.String()
		for line := range strings.Lines(s) {
			if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "no known endpoint") {
				t.Errorf("%s logged an error: %s", name, line)
			}
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, s)
		}
	})
	return e
}

// syncLog collects what a logger writes, from any goroutine.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func privateKey(t *testing.T) wg.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNamespaces runs two userspace engines in two network namespaces
// joined by a veth pair, as two nodes on a LAN: a UDP datagram crosses the
// tunnel, Peers shows the handshake, the same Set again keeps the session,
// Discover reports the WireGuard port as a STUN server in the other
// namespace sees it, and Close removes the interface.
func TestNamespaces(t *testing.T) {
	roottest.Need(t, "to create network namespaces and TUN devices")
	roottest.RemoveDeadNamespaces(t, ours)
	goroutines := runtime.NumGoroutine()
	a, b := newNetNS(t, prefix()+"a"), newNetNS(t, prefix()+"b")
	joinVeth(t, a, b)
	engA, engB := a.engine(t, prefix()+"a"), b.engine(t, prefix()+"b")
	keyA, keyB := privateKey(t), privateKey(t)
	cfgA := wg.Config{PrivateKey: keyA, Address: netip.MustParsePrefix("10.99.0.1/16"), Peers: []wg.Peer{{
		PublicKey:  keyB.PublicKey(),
		Endpoint:   netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), uint16(engB.Port())),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")},
	}}}
	// B learns A's endpoint from A's handshake, so only A initiates: when
	// both do at once, the handshakes can cross and void each other, and
	// WireGuard takes 5 to 15 seconds to try again.
	cfgB := wg.Config{PrivateKey: keyB, Address: netip.MustParsePrefix("10.99.0.2/16"), Peers: []wg.Peer{{
		PublicKey:  keyA.PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.1/32")},
	}}}
	// Set runs here, in the test's own namespace: the engines must not
	// care. B first, so that it knows A when A's handshake comes.
	if err := engB.Set(cfgB); err != nil {
		t.Fatal(err)
	}
	if err := engA.Set(cfgA); err != nil {
		t.Fatal(err)
	}
	checkRoute(t, a, engA.Name(), "10.99.77.1")
	sendAcross(t, a, b, "10.99.0.2")

	peer := onlyPeer(t, engA)
	if peer.LastHandshake.IsZero() || time.Since(peer.LastHandshake) > time.Minute || peer.TxBytes == 0 || peer.RxBytes == 0 {
		t.Errorf("A's peer after traffic: %+v; want a recent handshake and bytes both ways", peer)
	}
	if want := cfgA.Peers[0].Endpoint; peer.Endpoint != want {
		t.Errorf("A's peer endpoint = %v, want %v", peer.Endpoint, want)
	}
	if got, want := onlyPeer(t, engB).Endpoint, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(engA.Port())); got != want {
		t.Errorf("B's peer endpoint = %v, want %v, roamed to from A's handshake", got, want)
	}
	if err := engA.Set(cfgA); err != nil {
		t.Fatal(err)
	}
	if again := onlyPeer(t, engA); !again.LastHandshake.Equal(peer.LastHandshake) {
		t.Errorf("the same Set again changed the handshake from %v to %v", peer.LastHandshake, again.LastHandshake)
	}
	sendAcross(t, a, b, "10.99.0.2")

	discover(t, engA, b)

	name := engA.Name()
	for _, e := range []wg.Engine{engA, engB} {
		if err := e.Close(); err != nil {
			t.Errorf("Close %s: %v", e.Name(), err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("second Close %s: %v", e.Name(), err)
		}
	}
	if _, err := a.index(name); !errors.Is(err, unix.ENODEV) {
		t.Errorf("interface %s after Close: %v, want it gone", name, err)
	}
	checkGoroutines(t, goroutines)
}

// checkRoute checks that dst, in the VPN subnet but no peer's, routes
// through the interface: the address carries the subnet's length.
func checkRoute(t *testing.T, n *netNS, iface, dst string) {
	t.Helper()
	routes, err := n.nl.Route.Get(&rtnetlink.RouteMessage{
		Family: unix.AF_INET, DstLength: 32, Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP(dst).To4()},
	})
	if err != nil || len(routes) == 0 {
		t.Fatalf("route to %s: %v", dst, err)
	}
	index, err := n.index(iface)
	if err != nil {
		t.Fatal(err)
	}
	if routes[0].Attributes.OutIface != index {
		t.Errorf("%s routes through interface %d, want %s (%d)", dst, routes[0].Attributes.OutIface, iface, index)
	}
}

// sendAcross sends UDP datagrams from namespace a to dst in namespace b,
// which only the tunnel can carry, until one arrives.
func sendAcross(t *testing.T, a, b *netNS, dst string) {
	t.Helper()
	var recv, send *net.UDPConn
	b.in(t, func() (err error) {
		recv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dst)})
		return err
	})
	defer recv.Close()
	a.in(t, func() (err error) {
		send, err = net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr))
		return err
	})
	defer send.Close()
	msg := []byte("through the tunnel")
	buf := make([]byte, 100)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if _, err := send.Write(msg); err != nil {
			t.Fatalf("send to %s: %v", dst, err)
		}
		recv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := recv.ReadFromUDP(buf)
		if err == nil {
			if string(buf[:n]) != string(msg) || from.IP.String() != "10.99.0.1" {
				t.Fatalf("received %q from %v, want %q from 10.99.0.1", buf[:n], from, msg)
			}
			return
		}
	}
	t.Fatalf("no datagram reached %s through the tunnel in 15s", dst)
}

func onlyPeer(t *testing.T, e wg.Engine) wg.PeerStatus {
	t.Helper()
	peers, err := e.Peers()
	if err != nil || len(peers) != 1 {
		t.Fatalf("Peers of %s = %+v, %v; want one", e.Name(), peers, err)
	}
	return peers[0]
}

// discover runs a STUN server in n and checks that e's Discover gets
// back the address and WireGuard port it sends from.
func discover(t *testing.T, e wg.Engine, n *netNS) {
	t.Helper()
	var conn net.PacketConn
	n.in(t, func() (err error) {
		conn, err = net.ListenPacket("udp4", "198.51.100.2:0")
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stun.NewServer(conn, stun.Options{Rate: rate.Inf}).Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("STUN server: %v", err)
		}
	}()
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	defer qcancel()
	got, err := e.Discover(qctx, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	want := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(e.Port()))
	if err != nil || got != want {
		t.Errorf("Discover = %v, %v; want %v", got, err, want)
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

// TestNewKinds checks which engine New makes, and that its errors say
// what to do.
func TestNewKinds(t *testing.T) {
	roottest.Need(t, "to create network namespaces and TUN devices")
	roottest.RemoveDeadNamespaces(t, ours)
	n := newNetNS(t, prefix()+"k")
	newIn := func(opts wg.Options) (e wg.Engine, err error) {
		n.in(t, func() error { e, err = wg.New(opts); return nil })
		return e, err
	}

	kernel, err := newIn(wg.Options{Name: prefix() + "k", Kind: wg.KindKernel})
	hasKernel := err == nil
	if hasKernel {
		t.Logf("this kernel has WireGuard: %s", kernel.Kind())
		kernel.Close()
	} else if !strings.Contains(err.Error(), "userspace") {
		t.Errorf("kernel engine error %q does not say to use the userspace engine", err)
	}

	auto, err := newIn(wg.Options{Name: prefix() + "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	if want := map[bool]string{true: wg.KindKernel, false: wg.KindUserspace}[hasKernel]; auto.Kind() != want {
		t.Errorf("auto made a %s engine, want %s", auto.Kind(), want)
	}
	if auto.Port() == 0 {
		t.Error("auto engine has no port")
	}

	_, err = newIn(wg.Options{Name: "name-far-too-long-for-linux", Kind: wg.KindUserspace})
	if err == nil || !strings.Contains(err.Error(), "cannot create TUN device") {
		t.Errorf("New with a bad name: %v, want it to say it cannot create the TUN device", err)
	}
	us, err := newIn(wg.Options{Name: prefix() + "u", Kind: wg.KindUserspace})
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	if _, err := newIn(wg.Options{Name: us.Name(), Kind: wg.KindUserspace}); err == nil {
		t.Errorf("a second engine on %s was created", us.Name())
	}
	// A port another socket holds must not be taken silently: New says
	// so, or, if wireguard-go's link-up event opened the device before the
	// port was set (a race under load), the Set that asks for it does.
	var taken net.PacketConn
	n.in(t, func() (err error) { taken, err = net.ListenPacket("udp", ":0"); return err })
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).Port
	e, err := newIn(wg.Options{Name: prefix() + "p", Kind: wg.KindUserspace, ListenPort: port})
	if err == nil {
		defer e.Close()
		key, _ := wgtypes.GeneratePrivateKey()
		err = e.Set(wg.Config{PrivateKey: key, ListenPort: port, Address: netip.MustParsePrefix("10.99.0.9/16")})
	}
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("an engine on taken port %d: %v, want an error naming the port", port, err)
	}
}
