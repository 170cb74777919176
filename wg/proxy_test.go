package wg

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/relay/relaytest"
)

var (
	proxyIPA = netip.MustParseAddr("10.99.0.1")
	proxyIPB = netip.MustParseAddr("10.99.0.2")
	proxyIPC = netip.MustParseAddr("10.99.0.3")
)

// proxyFixture is node A's relay proxy in front of a fake kernel
// WireGuard (a UDP socket on 127.0.0.1), joined to a real relay.
type proxyFixture struct {
	r      *relaytest.Relay
	kernel *net.UDPConn
	proxy  *relayProxy
	connA  *relay.Conn
}

func newProxyFixture(t *testing.T) *proxyFixture {
	t.Helper()
	f := &proxyFixture{r: relaytest.Serve(t), kernel: listenLoopback(t)}
	port := f.kernel.LocalAddr().(*net.UDPAddr).Port
	f.proxy = newRelayProxy(func() int { return port }, nil)
	t.Cleanup(f.proxy.close)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.connA, err = relay.NewConn(pc, relay.Config{Relay: f.r.Addr, VPNIP: proxyIPA, Token: f.r.Tokens.Add(proxyIPA)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.connA.Close()
		waitGroup(t, &f.proxy.pumps, "the pump")
	})
	f.proxy.setConn(f.connA) // its pump takes in the HELLO-ACK
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.connA.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// fromKernel reads the next packet that reaches the fake kernel.
func (f *proxyFixture) fromKernel(t *testing.T) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	f.kernel.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := f.kernel.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the kernel got nothing: %v", err)
	}
	return buf[:n], from
}

// toPeer sends payload from the fake kernel to ep.
func (f *proxyFixture) toPeer(t *testing.T, payload []byte, ep netip.AddrPort) {
	t.Helper()
	if _, err := f.kernel.WriteToUDPAddrPort(payload, ep); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, packets <-chan relaytest.Packet, who string) relaytest.Packet {
	t.Helper()
	select {
	case p := <-packets:
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("%s received nothing through the relay", who)
		return relaytest.Packet{}
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("%s did not stop", what)
	}
}

// isClosed says whether nothing listens on ep any more.
func isClosed(t *testing.T, ep netip.AddrPort) bool {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ep))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestRelayProxy(t *testing.T) {
	f := newProxyFixture(t)
	connB, fromRelayB := f.r.Dial(t, proxyIPB)

	epB, err := f.proxy.endpoint(proxyIPB)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := f.proxy.endpoint(proxyIPB); err != nil || again != epB {
		t.Errorf("endpoint(B) again = %v, %v; want %v", again, err, epB)
	}
	if epB.Addr() != loopback || epB.Port() == 0 {
		t.Fatalf("endpoint(B) = %v, want 127.0.0.1 and a port", epB)
	}
	if got, ok := f.proxy.peerOf(epB); !ok || got != proxyIPB {
		t.Errorf("peerOf(%v) = %v, %v; want %v", epB, got, ok, proxyIPB)
	}
	if _, ok := f.proxy.peerOf(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), epB.Port())); ok {
		t.Errorf("peerOf knows 127.0.0.2:%d", epB.Port())
	}

	// Kernel to B: through the relay, from A.
	f.toPeer(t, []byte("handshake initiation"), epB)
	if p := receive(t, fromRelayB, "B"); p.From != proxyIPA || string(p.Payload) != "handshake initiation" {
		t.Errorf("B got %q from %v, want %q from %v", p.Payload, p.From, "handshake initiation", proxyIPA)
	}

	// B to A: at the kernel, from B's proxy socket.
	if err := connB.WriteTo([]byte("handshake response"), proxyIPA); err != nil {
		t.Fatal(err)
	}
	if got, from := f.fromKernel(t); string(got) != "handshake response" || from != epB {
		t.Errorf("the kernel got %q from %v, want %q from %v", got, from, "handshake response", epB)
	}

	// Only WireGuard may send through the relay.
	other := listenLoopback(t)
	other.WriteToUDPAddrPort([]byte("intruder"), epB)
	f.toPeer(t, []byte("data"), epB)
	if p := receive(t, fromRelayB, "B"); string(p.Payload) != "data" {
		t.Errorf("B got %q, want %q (the packet from another program must be dropped)", p.Payload, "data")
	}

	// C relays to A unasked: a socket appears for it, and the kernel can
	// answer through it.
	connC, fromRelayC := f.r.Dial(t, proxyIPC)
	if err := connC.WriteTo([]byte("from C"), proxyIPA); err != nil {
		t.Fatal(err)
	}
	got, epC := f.fromKernel(t)
	if string(got) != "from C" || epC == epB || epC.Addr() != loopback {
		t.Fatalf("the kernel got %q from %v, want %q from a new proxy socket", got, epC, "from C")
	}
	if peer, ok := f.proxy.peerOf(epC); !ok || peer != proxyIPC {
		t.Errorf("peerOf(%v) = %v, %v; want %v", epC, peer, ok, proxyIPC)
	}
	if ep, err := f.proxy.endpoint(proxyIPC); err != nil || ep != epC {
		t.Errorf("endpoint(C) = %v, %v; want the socket it came from, %v", ep, err, epC)
	}
	f.toPeer(t, []byte("to C"), epC)
	if p := receive(t, fromRelayC, "C"); p.From != proxyIPA || string(p.Payload) != "to C" {
		t.Errorf("C got %q from %v, want %q from %v", p.Payload, p.From, "to C", proxyIPA)
	}

	// retain closes C's socket and keeps B's.
	f.proxy.retain(map[netip.Addr]bool{proxyIPB: true})
	if !isClosed(t, epC) {
		t.Errorf("C's socket %v is still open after retain(B)", epC)
	}
	if _, ok := f.proxy.peerOf(epC); ok {
		t.Errorf("peerOf(%v) still knows C after retain(B)", epC)
	}
	if isClosed(t, epB) {
		t.Errorf("B's socket %v closed by retain(B)", epB)
	}
	f.toPeer(t, []byte("still there"), epB)
	if p := receive(t, fromRelayB, "B"); string(p.Payload) != "still there" {
		t.Errorf("B got %q after retain, want %q", p.Payload, "still there")
	}

	// close closes the sockets and ends their readers; the pump ends
	// when its connection is closed (in the fixture's cleanup).
	f.proxy.close()
	waitGroup(t, &f.proxy.readers, "the socket readers")
	if !isClosed(t, epB) {
		t.Errorf("B's socket %v is still open after close", epB)
	}
	if _, err := f.proxy.endpoint(proxyIPB); err == nil {
		t.Error("endpoint after close succeeded")
	}
	// Packets from the relay no longer open sockets.
	connC.WriteTo([]byte("late"), proxyIPA)
	connB.WriteTo([]byte("late"), proxyIPA)
	time.Sleep(100 * time.Millisecond)
	f.proxy.mu.Lock()
	n := len(f.proxy.sockets)
	f.proxy.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sockets open after close", n)
	}
}

// TestRelayProxyNoPort: until WireGuard listens, packets from the relay
// are dropped and the pump still takes in HELLO-ACKs.
func TestRelayProxyNoPort(t *testing.T) {
	r := relaytest.Serve(t)
	p := newRelayProxy(func() int { return 0 }, nil)
	defer p.close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := relay.NewConn(pc, relay.Config{Relay: r.Addr, VPNIP: proxyIPA, Token: r.Tokens.Add(proxyIPA)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); waitGroup(t, &p.pumps, "the pump") }()
	p.setConn(c)
	p.setConn(c) // no second pump on the same connection
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	connB, _ := r.Dial(t, proxyIPB)
	connB.WriteTo([]byte("early"), proxyIPA)
	time.Sleep(100 * time.Millisecond)
	p.mu.Lock()
	_, ok := p.sockets[proxyIPB]
	p.mu.Unlock()
	if ok {
		t.Error("a packet from the relay opened a socket while WireGuard listens nowhere")
	}
}

func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// TestRelayProxyAllocs: neither forwarding path allocates once the
// sockets exist.
func TestRelayProxyAllocs(t *testing.T) {
	f := newProxyFixture(t)
	_, fromRelayB := f.r.Dial(t, proxyIPB)
	if _, err := f.proxy.endpoint(proxyIPB); err != nil {
		t.Fatal(err)
	}
	f.proxy.mu.Lock()
	s := f.proxy.sockets[proxyIPB]
	f.proxy.mu.Unlock()
	go func() { // drain the kernel
		buf := make([]byte, 2048)
		for {
			if _, _, err := f.kernel.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		for range fromRelayB {
		}
	}()
	payload := bytes.Repeat([]byte{4}, 1400)
	if allocs := testing.AllocsPerRun(100, func() { f.proxy.toWireGuard(proxyIPB, payload) }); allocs != 0 {
		t.Errorf("relay to WireGuard: %v allocations per packet, want 0", allocs)
	}
	if raceEnabled() {
		t.Skip("sync.Pool (in relay.Conn.WriteTo) drops items at random under the race detector")
	}
	kernelAddr := unmap(f.kernel.LocalAddr().(*net.UDPAddr).AddrPort())
	if allocs := testing.AllocsPerRun(100, func() { f.proxy.toRelay(s, payload, kernelAddr) }); allocs != 0 {
		t.Errorf("WireGuard to relay: %v allocations per packet, want 0", allocs)
	}
}
