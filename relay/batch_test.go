package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// batchServer returns a Server on loopback that is not serving, set up to
// handle batches, and the addresses of two sockets, for A and B.
func batchServer(t *testing.T) (srv *Server, out *outbox, connA, connB *net.UDPConn) {
	t.Helper()
	tokens := &mapTokens{m: map[netip.Addr][]byte{ipA: token(ipA), ipB: token(ipB)}}
	conn := listen(t)
	srv = NewServer(conn, tokens, noLimits)
	w := newBatchIO(conn)
	if w == nil {
		t.Skip("no batch I/O on this platform")
	}
	return srv, newOutbox(w), listen(t), listen(t)
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// readRaw reads n datagrams from c.
func readRaw(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, maxDatagram)
	for range n {
		c.SetReadDeadline(time.Now().Add(time.Second))
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		got = append(got, bytes.Clone(buf[:m]))
	}
	return got
}

// TestHandleBatchMixed sends HELLOs, DATA and garbage in one batch.
func TestHandleBatchMixed(t *testing.T) {
	srv, out, connA, connB := batchServer(t)
	a, b := addrOf(connA), addrOf(connB)
	stranger := netip.MustParseAddrPort("127.0.0.1:9")
	now := time.Now()
	batch := []struct {
		b    []byte
		from netip.AddrPort
	}{
		{AppendHello(nil, ipA, token(ipA), now, 1), a},
		{AppendHello(nil, ipB, token(ipB), now, 2), b},
		{AppendData(nil, ipB, []byte("first")), a},
		{[]byte("garbage"), a},
		{AppendData(nil, ipB, []byte("spoof")), stranger},
		{AppendHello(nil, ipA, token(ipB), now, 3), a},
		{[]byte{'w', 'r', 2, typeData, 10, 77, 0, 2}, a},
		{AppendData(nil, ipA, []byte("to A")), b},
		{AppendData(nil, ipB, []byte("second")), a},
	}
	var bufs [][]byte
	var from []netip.AddrPort
	for _, d := range batch {
		bufs, from = append(bufs, d.b), append(from, d.from)
	}
	srv.handleBatch(out, bufs, from, now)

	wantB := [][]byte{AppendHelloAck(nil, 2), AppendData(nil, ipA, []byte("first")), AppendData(nil, ipA, []byte("second"))}
	if diff := cmp.Diff(wantB, readRaw(t, connB, 3)); diff != "" {
		t.Errorf("B received (-want +got):\n%s", diff)
	}
	wantA := [][]byte{AppendHelloAck(nil, 1), AppendData(nil, ipB, []byte("to A"))}
	if diff := cmp.Diff(wantA, readRaw(t, connA, 2)); diff != "" {
		t.Errorf("A received (-want +got):\n%s", diff)
	}
	want := Stats{Received: 9, HellosOK: 2, HellosBad: 1, Forwarded: 3, ForwardedBytes: 3*DataOverhead + 5 + 4 + 6, Malformed: 2, Unbound: 1}
	if diff := cmp.Diff(want, srv.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestHandleBatchRefusedSkipped checks that a datagram the kernel refuses
// costs only itself.
func TestHandleBatchRefusedSkipped(t *testing.T) {
	srv, out, connA, connB := batchServer(t)
	a, b := addrOf(connA), addrOf(connB)
	now := time.Now()
	v6 := netip.MustParseAddrPort("[2001:db8::1]:5") // an IPv4 socket cannot send there
	srv.handleBatch(out, [][]byte{
		AppendHello(nil, ipA, token(ipA), now, 1),
		AppendHello(nil, ipB, token(ipB), now, 2),
	}, []netip.AddrPort{a, v6}, now)
	srv.handleBatch(out, [][]byte{AppendHello(nil, ipB, token(ipB), now, 3)}, []netip.AddrPort{b}, now)
	readRaw(t, connA, 1)
	readRaw(t, connB, 1)
	if st := srv.Stats(); st.HellosOK != 2 || st.Received != 3 {
		t.Errorf("HellosOK = %d, Received = %d; want 2 and 3", st.HellosOK, st.Received)
	}
}

// TestForwardBatchAllocs checks that forwarding a batch allocates nothing.
func TestForwardBatchAllocs(t *testing.T) {
	srv, out, connA, connB := batchServer(t)
	a, b := addrOf(connA), addrOf(connB)
	now := time.Now()
	srv.handleBatch(out, [][]byte{
		AppendHello(nil, ipA, token(ipA), now, 1),
		AppendHello(nil, ipB, token(ipB), now, 2),
	}, []netip.AddrPort{a, b}, now)
	data := AppendData(nil, ipB, make([]byte, 1400))
	bufs := make([][]byte, 16)
	from := make([]netip.AddrPort, len(bufs))
	for i := range bufs {
		bufs[i], from[i] = make([]byte, len(data)), a
	}
	go func() { // keep B's socket buffer from filling
		buf := make([]byte, maxDatagram)
		for {
			if _, _, err := connB.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	allocs := testing.AllocsPerRun(100, func() {
		for _, buf := range bufs {
			copy(buf, data)
		}
		srv.handleBatch(out, bufs, from, time.Now())
	})
	if st := srv.Stats(); st.Forwarded < 100*uint64(len(bufs)) || allocs != 0 {
		t.Errorf("%.1f allocations per batch of %d (%d forwarded), want 0", allocs, len(bufs), st.Forwarded)
	}
}

// TestServeBatchInOrder sends a batch through a serving relay, and checks
// that it arrives intact and in order.
func TestServeBatchInOrder(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	var payloads [][]byte
	var want []packet
	for i := range 150 { // more than one sendmmsg
		p := fmt.Sprintf("packet %d %s", i, bytes.Repeat([]byte{'x'}, i*9))
		payloads, want = append(payloads, []byte(p)), append(want, packet{ipA, p})
	}
	if err := a.WriteBatch(payloads, ipB); err != nil {
		t.Fatal(err)
	}
	b.expect(t, want...)
	st := r.waitStats(t, 152)
	if st.Forwarded != 150 {
		t.Errorf("Forwarded = %d, want 150", st.Forwarded)
	}
	if err := a.WriteBatch(payloads[:1], netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("WriteBatch to an IPv6 peer succeeded")
	}
}

// TestBatchFallback checks WriteBatch and Receive on a conn that is not
// a *net.UDPConn.
func TestBatchFallback(t *testing.T) {
	r := startServer(t, noLimits)
	b := r.join(t, ipB)
	pc := listen(t)
	a, err := NewConn(packetConn{pc}, Config{Relay: r.addr, VPNIP: ipA, Token: token(ipA)})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []packet, 16)
	go func() {
		in := NewInbox()
		for {
			if err := a.Receive(in); err != nil {
				return
			}
			var ps []packet
			for {
				p, peer, ok := in.Next()
				if !ok {
					break
				}
				ps = append(ps, packet{peer, string(p)})
			}
			got <- ps
		}
	}()
	t.Cleanup(func() { a.Close() })
	if err := a.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteBatch([][]byte{[]byte("one"), []byte("two")}, ipB); err != nil {
		t.Fatal(err)
	}
	b.expect(t, packet{ipA, "one"}, packet{ipA, "two"})
	b.send(t, ipA, "back")
	select {
	case ps := <-got:
		if diff := cmp.Diff([]packet{{ipB, "back"}}, ps, equateAddrs); diff != "" {
			t.Errorf("Receive (-want +got):\n%s", diff)
		}
	case <-time.After(time.Second):
		t.Fatal("Receive returned nothing")
	}
}

// TestWriteBatchAllocs checks that WriteBatch allocates nothing.
func TestWriteBatchAllocs(t *testing.T) {
	sink := listen(t)
	c, err := NewConn(listen(t), Config{Relay: addrOf(sink), VPNIP: ipA, Token: token(ipA)})
	if err != nil {
		t.Fatal(err)
	}
	if c.udp == nil {
		t.Skip("no batch I/O on this platform")
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	payloads := make([][]byte, 16)
	for i := range payloads {
		payloads[i] = make([]byte, 1400)
	}
	c.WriteBatch(payloads, ipB)
	if allocs := testing.AllocsPerRun(100, func() { c.WriteBatch(payloads, ipB) }); allocs != 0 {
		t.Errorf("%.1f allocations per WriteBatch, want 0", allocs)
	}
}
