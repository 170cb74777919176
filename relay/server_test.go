package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/wire-mesh/wire/stun"
	"golang.org/x/time/rate"
)

var (
	ipA = netip.MustParseAddr("10.77.0.1")
	ipB = netip.MustParseAddr("10.77.0.2")
	ipC = netip.MustParseAddr("10.77.0.3")
)

// noLimits turns rate limiting off.
var noLimits = Options{PacketRate: rate.Inf, ByteRate: rate.Inf}

// mapTokens is a Tokens for tests; relaytest.Tokens would be an import
// cycle.
type mapTokens struct {
	mu sync.Mutex
	m  map[netip.Addr][]byte
}

func (ts *mapTokens) Token(ip netip.Addr) ([]byte, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tok, ok := ts.m[ip]
	return tok, ok
}

// token returns ip's token, made up from ip.
func token(ip netip.Addr) []byte {
	return bytes.Repeat(ip.AsSlice(), TokenLen/4)
}

// testRelay is a Server on loopback that knows the tokens of ipA, ipB, ipC.
type testRelay struct {
	*Server
	addr netip.AddrPort
}

// startServer runs a Server on 127.0.0.1 until the test ends, then checks
// that Serve returned nil and left no goroutine behind.
func startServer(t *testing.T, opts Options) *testRelay {
	t.Helper()
	before := runtime.NumGoroutine()
	conn := listen(t)
	tokens := &mapTokens{m: map[netip.Addr][]byte{}}
	for _, ip := range []netip.Addr{ipA, ipB, ipC} {
		tokens.m[ip] = token(ip)
	}
	srv := NewServer(conn, tokens, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return after its context was cancelled")
		}
		checkGoroutines(t, before)
	})
	return &testRelay{srv, conn.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkGoroutines waits a little for the goroutine count to drop to before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines running, want at most %d:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// packet is what a client received.
type packet struct {
	From    netip.Addr
	Payload string
}

// client is a Conn with a reader goroutine.
type client struct {
	*Conn
	got chan packet
}

// dial connects a client for ip with token from a new socket, and reads
// from it until the test ends. It does not say HELLO.
func (r *testRelay) dial(t *testing.T, ip netip.Addr, token []byte) *client {
	t.Helper()
	return r.dialConfig(t, Config{Relay: r.addr, VPNIP: ip, Token: token})
}

// dialConfig is dial with a Config of the test's.
func (r *testRelay) dialConfig(t *testing.T, cfg Config) *client {
	t.Helper()
	return dialOver(t, listen(t), cfg)
}

// dialOver is dial over pc, a socket or a Stream.
func dialOver(t *testing.T, pc net.PacketConn, cfg Config) *client {
	t.Helper()
	ip := cfg.VPNIP
	conn, err := NewConn(pc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{conn, make(chan packet, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case c.got <- packet{from, string(buf[:n])}:
			default:
				t.Errorf("client %v: receive queue full", ip)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

// join dials and says HELLO.
func (r *testRelay) join(t *testing.T, ip netip.Addr) *client {
	t.Helper()
	c := r.dial(t, ip, token(ip))
	if err := c.Hello(t.Context()); err != nil {
		t.Fatalf("Hello for %v: %v", ip, err)
	}
	return c
}

func (c *client) send(t *testing.T, to netip.Addr, payload string) {
	t.Helper()
	if err := c.WriteTo([]byte(payload), to); err != nil {
		t.Fatal(err)
	}
}

// next returns the next packet c received, failing the test after a second.
func (c *client) next(t *testing.T) packet {
	t.Helper()
	select {
	case p := <-c.got:
		return p
	case <-time.After(time.Second):
		t.Fatalf("client %v received nothing", c.cfg.VPNIP)
		return packet{}
	}
}

// expect checks that the next packets c receives are want.
func (c *client) expect(t *testing.T, want ...packet) {
	t.Helper()
	var got []packet
	for range want {
		got = append(got, c.next(t))
	}
	if diff := cmp.Diff(want, got, equateAddrs); diff != "" {
		t.Errorf("client %v received (-want +got):\n%s", c.cfg.VPNIP, diff)
	}
}

// expectNothing checks that c has received nothing so far.
func (c *client) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case p := <-c.got:
		t.Errorf("client %v received %+v, want nothing", c.cfg.VPNIP, p)
	default:
	}
}

// waitStats waits until the server has received n datagrams, and returns
// its stats then.
func (r *testRelay) waitStats(t *testing.T, n uint64) Stats {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := r.Stats()
		if st.Received >= n || time.Now().After(deadline) {
			return st
		}
	}
}

func TestExchange(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	a.send(t, ipB, "ping")
	b.expect(t, packet{ipA, "ping"})
	b.send(t, ipA, "pong")
	a.expect(t, packet{ipB, "pong"})

	// The server counts a datagram after sending what it called for, so
	// a's having the pong does not mean it is counted yet.
	want := Stats{Received: 4, HellosOK: 2, Forwarded: 2, ForwardedBytes: 2 * (DataOverhead + 4)}
	if diff := cmp.Diff(want, r.waitStats(t, 4)); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	wantNodes := []NodeStats{
		{VPNIP: ipA, Addr: a.LocalAddr().(*net.UDPAddr).AddrPort(), Packets: 1, Bytes: DataOverhead + 4},
		{VPNIP: ipB, Addr: b.LocalAddr().(*net.UDPAddr).AddrPort(), Packets: 1, Bytes: DataOverhead + 4},
	}
	if diff := cmp.Diff(wantNodes, r.Nodes(), equateAddrs, cmpopts.IgnoreFields(NodeStats{}, "LastSeen")); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
}

func TestUnboundNotForwarded(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	stranger := listen(t)
	stranger.WriteToUDPAddrPort(AppendData(nil, ipB, []byte("spoof")), r.addr)
	// A node that has not said HELLO is not bound either.
	c := r.dial(t, ipC, token(ipC))
	c.send(t, ipB, "no hello")
	st := r.waitStats(t, 4)
	a.send(t, ipB, "legit")
	b.expect(t, packet{ipA, "legit"})
	b.expectNothing(t)
	if st.Unbound != 2 {
		t.Errorf("Unbound = %d, want 2", st.Unbound)
	}
}

// TestOnlyOwnTraffic checks that a node receives only what is addressed to
// its VPN IP, and that a wrong token binds nothing.
func TestOnlyOwnTraffic(t *testing.T) {
	r := startServer(t, noLimits)
	a, b, c := r.join(t, ipA), r.join(t, ipB), r.join(t, ipC)
	thief := r.dial(t, ipB, token(ipC)) // claims B's address with C's token
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	if err := thief.Hello(ctx); err == nil {
		t.Fatal("Hello with the wrong token succeeded")
	}
	for i := range 3 {
		a.send(t, ipB, fmt.Sprint("for B ", i))
	}
	b.expect(t, packet{ipA, "for B 0"}, packet{ipA, "for B 1"}, packet{ipA, "for B 2"})
	a.send(t, ipC, "for C")
	c.expect(t, packet{ipA, "for C"})
	c.expectNothing(t)
	thief.expectNothing(t)
	if st := r.Stats(); st.HellosBad == 0 {
		t.Errorf("HellosBad = 0 after a HELLO with the wrong token")
	}
}

func TestRoaming(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	a.send(t, ipB, "before")
	b.expect(t, packet{ipA, "before"})

	moved := r.join(t, ipB) // B from a new socket
	a.send(t, ipB, "after")
	moved.expect(t, packet{ipA, "after"})
	b.send(t, ipA, "from the old address")
	moved.send(t, ipA, "from the new address")
	a.expect(t, packet{ipB, "from the new address"})
	b.expectNothing(t)
	if st := r.Stats(); st.Unbound != 1 {
		t.Errorf("Unbound = %d, want 1 (the old address)", st.Unbound)
	}
}

func TestReplayedHello(t *testing.T) {
	r := startServer(t, noLimits)
	conn := listen(t)
	hello := AppendHello(nil, ipA, token(ipA), time.Now(), 99)
	acks := 0
	buf := make([]byte, 64)
	for range 2 {
		conn.WriteToUDPAddrPort(hello, r.addr)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
			if nonce, err := ParseHelloAck(buf[:n]); err != nil || nonce != 99 {
				t.Errorf("answer %x: nonce %d, %v", buf[:n], nonce, err)
			}
			acks++
		}
	}
	if acks != 1 {
		t.Errorf("%d HELLO-ACKs for a HELLO sent twice, want 1", acks)
	}
	if diff := cmp.Diff(Stats{Received: 2, HellosOK: 1, HellosBad: 1}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestBadHellosCounted(t *testing.T) {
	r := startServer(t, noLimits)
	conn := listen(t)
	unknown := netip.MustParseAddr("10.77.0.99")
	for _, b := range [][]byte{
		AppendHello(nil, unknown, token(unknown), time.Now(), 1),
		AppendHello(nil, ipA, token(ipA), time.Now().Add(-2*Window), 2),
		AppendHello(nil, ipA, token(ipB), time.Now(), 3),
	} {
		conn.WriteToUDPAddrPort(b, r.addr)
	}
	for _, b := range [][]byte{
		[]byte("wr"), {'w', 'r', 2, typeHello}, AppendHelloAck(nil, 1), {'w', 'r', 1, typeData, 10},
	} {
		conn.WriteToUDPAddrPort(b, r.addr)
	}
	want := Stats{Received: 7, HellosBad: 3, HellosStale: 1, Malformed: 4}
	if diff := cmp.Diff(want, r.waitStats(t, 7)); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	// Only the stale HELLO, whose mac proved the token, is answered: with
	// a HELLO-STALE, shorter than it.
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1500)
	var answers []int
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		if _, _, err := ParseHelloStale(buf[:n], token(ipA)); err != nil {
			t.Errorf("an answer that is not a HELLO-STALE for a: %x", buf[:n])
		}
		answers = append(answers, n)
	}
	if len(answers) != 1 || answers[0] >= helloLen {
		t.Errorf("answers to bad HELLOs: %v bytes; want one, shorter than a HELLO", answers)
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		size     int
		maxSent  uint64 // forwarded at most, with slack for time passing
		minLimit uint64
	}{
		{"packets", Options{PacketRate: 10, PacketBurst: 20, ByteRate: rate.Inf}, 10, 25, 75},
		{"bytes", Options{PacketRate: rate.Inf, ByteRate: 1000, ByteBurst: 10_000}, 1000, 70, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startServer(t, tt.opts)
			a := r.join(t, ipA)
			b := r.dial(t, ipB, token(ipB)) // ByteBurst is raised to 64 KiB
			if err := b.Hello(t.Context()); err != nil {
				t.Fatal(err)
			}
			payload := string(make([]byte, tt.size))
			for i := range 100 {
				a.send(t, ipB, payload)
				if i%10 == 9 { // don't overflow the relay's socket buffer
					r.waitStats(t, uint64(2+i+1))
				}
			}
			st := r.waitStats(t, 102)
			if st.Forwarded+st.RateLimited != 100 || st.Forwarded > tt.maxSent || st.RateLimited < tt.minLimit {
				t.Errorf("of 100 packets, %d forwarded and %d rate limited; want at most %d forwarded", st.Forwarded, st.RateLimited, tt.maxSent)
			}
			if got := uint64(len(b.got)); got != st.Forwarded {
				t.Errorf("B received %d packets, relay forwarded %d", got, st.Forwarded)
			}
		})
	}
}

// TestNoAmplification checks that the forwarded datagram is exactly as large
// as the one received, for sizes up to the largest UDP datagram.
func TestNoAmplification(t *testing.T) {
	r := startServer(t, noLimits)
	a := r.join(t, ipA)
	b := listen(t) // B reads the raw datagrams
	b.WriteToUDPAddrPort(AppendHello(nil, ipB, token(ipB), time.Now(), 1), r.addr)
	buf := make([]byte, maxDatagram+1)
	b.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := b.ReadFromUDPAddrPort(buf); err != nil || !bytes.Equal(buf[:n], AppendHelloAck(nil, 1)) {
		t.Fatalf("HELLO answered with %x, %v", buf[:n], err)
	}
	const maxIPv4UDP = 65_507
	for _, size := range []int{0, 1, 2, 100, 576, 1280, 1420, 1500, 9000, 32768, maxIPv4UDP - DataOverhead} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		sent := AppendData(nil, ipB, payload)
		if err := a.WriteTo(payload, ipB); err != nil {
			t.Fatalf("send %d bytes: %v", size, err)
		}
		b.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := b.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d-byte payload not forwarded: %v", size, err)
		}
		if n != len(sent) {
			t.Errorf("relay received %d bytes and sent %d", len(sent), n)
		}
		if want := AppendData(nil, ipA, payload); !bytes.Equal(buf[:n], want) {
			t.Errorf("%d-byte payload forwarded as %.32x…, want %.32x…", size, buf[:n], want)
		}
	}
}

func TestBindingExpiry(t *testing.T) {
	const ttl = 300 * time.Millisecond
	r := startServer(t, Options{PacketRate: rate.Inf, ByteRate: rate.Inf, BindingTimeout: ttl})
	a, b := r.join(t, ipA), r.join(t, ipB)
	a.send(t, ipB, "fresh")
	b.expect(t, packet{ipA, "fresh"})

	time.Sleep(ttl + 100*time.Millisecond)
	a.send(t, ipB, "A expired")
	st := r.waitStats(t, 4)
	if err := a.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.send(t, ipB, "B expired")
	st2 := r.waitStats(t, 6)
	b.expectNothing(t)
	if st.Unbound != 1 || st2.NoRoute != 1 {
		t.Errorf("after expiry: Unbound = %d, NoRoute = %d; want 1 and 1", st.Unbound, st2.NoRoute)
	}
	if n := len(r.Nodes()); n != 1 {
		t.Errorf("%d nodes bound, want 1 (A)", n)
	}
}

func TestForget(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	r.Forget(ipB)
	a.send(t, ipB, "gone")
	if st := r.waitStats(t, 3); st.NoRoute != 1 {
		t.Errorf("NoRoute = %d after Forget, want 1", st.NoRoute)
	}
	b.expectNothing(t)
}

// TestKeepalive checks that Run keeps bindings alive past their timeout.
func TestKeepalive(t *testing.T) {
	const ttl = 300 * time.Millisecond
	r := startServer(t, Options{PacketRate: rate.Inf, ByteRate: rate.Inf, BindingTimeout: ttl})
	ctx, cancel := context.WithCancel(t.Context())
	var clients []*client
	done := make(chan error, 2)
	for _, ip := range []netip.Addr{ipA, ipB} {
		c := r.dial(t, ip, token(ip))
		c.cfg.Keepalive = ttl / 3
		go func() { done <- c.Run(ctx) }()
		clients = append(clients, c)
	}
	time.Sleep(3 * ttl)
	clients[1].send(t, ipA, "still there")
	clients[0].expect(t, packet{ipB, "still there"})
	cancel()
	for range clients {
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
}

func TestServeClosedUnder(t *testing.T) {
	conn := listen(t)
	srv := NewServer(conn, &mapTokens{}, Options{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context()) }()
	conn.Close()
	if err := <-done; err == nil {
		t.Error("Serve = nil after its conn was closed, want an error")
	}
}

// TestForwardAllocs checks that forwarding allocates nothing.
func TestForwardAllocs(t *testing.T) {
	tokens := &mapTokens{m: map[netip.Addr][]byte{ipA: token(ipA), ipB: token(ipB)}}
	srv := NewServer(listen(t), tokens, noLimits)
	connA, connB := listen(t), listen(t)
	addrA := connA.LocalAddr().(*net.UDPAddr).AddrPort()
	addrB := connB.LocalAddr().(*net.UDPAddr).AddrPort()
	now := time.Now()
	srv.handle(AppendHello(nil, ipA, token(ipA), now, 1), addrA, now, nil)
	srv.handle(AppendHello(nil, ipB, token(ipB), now, 2), addrB, now, nil)
	data := AppendData(nil, ipB, make([]byte, 1400))
	buf := make([]byte, len(data))
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, data)
		srv.handle(buf, addrA, time.Now(), nil)
	})
	if st := srv.Stats(); st.Forwarded < 100 || allocs != 0 {
		t.Errorf("%.1f allocations per forwarded packet (%d forwarded), want 0", allocs, st.Forwarded)
	}
}

func BenchmarkForward(b *testing.B) {
	for _, size := range []int{128, 1420} {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchmarkForward(b, size) })
	}
}

// benchmarkForward sends b.N packets from A to B through a relay on
// loopback, and reports how many arrived.
func benchmarkForward(b *testing.B, size int) {
	conns := make([]*net.UDPConn, 3)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		defer c.Close()
		conns[i] = c
	}
	tokens := &mapTokens{m: map[netip.Addr][]byte{ipA: token(ipA), ipB: token(ipB)}}
	srv := NewServer(conns[0], tokens, noLimits)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	relayAddr := conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
	a, _ := NewConn(conns[1], Config{Relay: relayAddr, VPNIP: ipA, Token: token(ipA)})
	bc, _ := NewConn(conns[2], Config{Relay: relayAddr, VPNIP: ipB, Token: token(ipB)})
	var received int
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, maxDatagram)
		for {
			if _, _, err := bc.ReadFrom(buf); err != nil {
				return
			}
			received++
		}
	}()
	go func() { // A's HELLO-ACKs
		buf := make([]byte, maxDatagram)
		for {
			if _, _, err := a.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	for _, c := range []*Conn{a, bc} {
		if err := c.Hello(ctx); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := a.WriteTo(payload, ipB); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(time.Second); srv.Stats().Received < uint64(b.N)+2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	time.Sleep(20 * time.Millisecond)
	bc.Close()
	<-readDone
	b.ReportMetric(100*float64(received)/float64(b.N), "%delivered")
}

// A node whose clock is off is told by the relay, with the relay's time
// under its token, warns about its clock, and corrects its HELLOs.
func TestClockSkewCorrected(t *testing.T) {
	r := startServer(t, noLimits)
	var log strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return log.Write(p)
	}), nil))
	slow := func() time.Time { return time.Now().Add(-5 * time.Minute) }
	a := r.dialConfig(t, Config{Relay: r.addr, VPNIP: ipA, Token: token(ipA), Clock: slow, Logger: logger})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := a.Hello(ctx); err != nil {
		t.Fatalf("HELLO from a node 5 minutes behind: %v", err)
	}
	if skew := a.Skew(); (skew - 5*time.Minute).Abs() > 2*time.Second {
		t.Errorf("skew = %v, want about 5m", skew)
	}
	logMu.Lock()
	logged := log.String()
	logMu.Unlock()
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "clock") || !strings.Contains(logged, "off_by=-5m0s") {
		t.Errorf("log:\n%s\nwant a warning about this machine's clock", logged)
	}
	if st := r.waitStats(t, 2); st.HellosStale != 1 || st.HellosOK != 1 { // counted after the answers go
		t.Errorf("stats = %+v, want one stale HELLO answered, then one accepted", st)
	}
	b := r.join(t, ipB)
	a.send(t, ipB, "on time")
	b.expect(t, packet{ipA, "on time"})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// With a STUN responder, the relay's port answers STUN Binding requests
// with the address they came from; without one it does not.
func TestRelayAnswersSTUN(t *testing.T) {
	opts := noLimits
	opts.STUN = stun.NewResponder(stun.Options{})
	r := startServer(t, opts)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	to := net.UDPAddrFromAddrPort(r.addr)
	mapped, err := stun.Query(ctx, conn, to)
	if err != nil || mapped.String() != conn.LocalAddr().String() {
		t.Errorf("STUN at the relay's port: %v, %v; want %v", mapped, err, conn.LocalAddr())
	}
	waitStat(t, r, func(s Stats) bool { return s.STUN == 1 }) // counted once sent: perhaps after it arrived

	plain := startServer(t, noLimits)
	qctx, qcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer qcancel()
	if _, err := stun.Query(qctx, conn, net.UDPAddrFromAddrPort(plain.addr)); err == nil {
		t.Error("a relay without a STUN responder answered STUN")
	}
	waitStat(t, plain, func(s Stats) bool { return s.Malformed > 0 && s.STUN == 0 })
}

// PerNode at the default byte rate gives the default packet rate: the
// proportion --relay-rate keeps.
func TestPerNode(t *testing.T) {
	if p, b := PerNode(2e9); p != DefaultPacketRate || b != DefaultByteRate {
		t.Errorf("PerNode(2 Gbit/s) = %v packets/s, %v bytes/s; want the defaults %v, %v", p, b, DefaultPacketRate, DefaultByteRate)
	}
	if p, b := PerNode(rate.Inf); p != rate.Inf || b != rate.Inf {
		t.Errorf("PerNode(Inf) = %v, %v", p, b)
	}
}
