package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// streamPair is both ends of a TCP connection on loopback.
func streamPair(t *testing.T) (node, relay net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	node, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	relay = <-accepted
	if relay == nil {
		t.Fatal("accept failed")
	}
	return node, relay
}

// serveStream has the relay serve a new stream for owner until the test
// ends, and returns the node's end, unread.
func (r *testRelay) serveStream(t *testing.T, owner netip.Addr) (net.Conn, *served) {
	t.Helper()
	node, relay := streamPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{done: make(chan struct{})}
	go func() {
		s.err = r.ServeStream(ctx, relay, owner)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		node.Close()
		if ok, _ := s.wait(5 * time.Second); !ok {
			t.Error("ServeStream did not return after its context was cancelled")
		}
	})
	return node, s
}

// served is what became of a ServeStream.
type served struct {
	done chan struct{}
	err  error
}

// wait waits up to d for ServeStream to return, and says what it did.
func (s *served) wait(d time.Duration) (returned bool, err error) {
	select {
	case <-s.done:
		return true, s.err
	case <-time.After(d):
		return false, nil
	}
}

// joinStream is join over a stream of the relay's, owned by ip.
func (r *testRelay) joinStream(t *testing.T, ip netip.Addr) *client {
	t.Helper()
	conn, _ := r.serveStream(t, ip)
	c := dialOver(t, NewStream(conn, r.addr), Config{Relay: r.addr, VPNIP: ip, Token: token(ip)})
	if err := c.Hello(t.Context()); err != nil {
		t.Fatalf("Hello over a stream for %v: %v", ip, err)
	}
	return c
}

// A node on a stream and one on UDP exchange packets through the relay,
// as two on UDP do; the relay counts them alike and lists the stream's
// node at its stream.
func TestStreamExchange(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.joinStream(t, ipB)
	a.send(t, ipB, "ping")
	b.expect(t, packet{ipA, "ping"})
	b.send(t, ipA, "pong")
	a.expect(t, packet{ipB, "pong"})
	c := r.joinStream(t, ipC)
	b.send(t, ipC, "stream to stream")
	c.expect(t, packet{ipB, "stream to stream"})

	st := r.waitStats(t, 6)
	if st.HellosOK != 3 || st.Forwarded != 3 || st.Streams != 2 {
		t.Errorf("stats %+v: want 3 HELLOs answered, 3 forwarded, 2 streams", st)
	}
	for _, n := range r.Nodes() {
		if n.Stream != (n.VPNIP != ipA) {
			t.Errorf("node %v: Stream %v", n.VPNIP, n.Stream)
		}
	}
}

// A stream is its owner's: a HELLO on it for another node is refused, so
// that an authenticated node cannot take another's traffic with a token
// it should not have.
func TestStreamOnlyItsOwner(t *testing.T) {
	r := startServer(t, noLimits)
	conn, _ := r.serveStream(t, ipA)
	c := dialOver(t, NewStream(conn, r.addr), Config{Relay: r.addr, VPNIP: ipB, Token: token(ipB)})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := c.Hello(ctx); err == nil {
		t.Fatal("a HELLO for B on A's stream was answered")
	}
	if st := r.Stats(); st.HellosBad == 0 {
		t.Errorf("stats %+v: the HELLO is not counted refused", st)
	}
}

// When a stream ends, its node is unbound at once: traffic to it is not
// queued for a stream that is gone, and its next HELLO (over UDP, or a
// new stream) binds it again.
func TestStreamEndUnbinds(t *testing.T) {
	r := startServer(t, noLimits)
	a := r.join(t, ipA)
	conn, done := r.serveStream(t, ipB)
	b := dialOver(t, NewStream(conn, r.addr), Config{Relay: r.addr, VPNIP: ipB, Token: token(ipB)})
	if err := b.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if ok, err := done.wait(2 * time.Second); !ok {
		t.Fatal("ServeStream went on after the node closed its end")
	} else if err != nil {
		t.Errorf("ServeStream after the node closed: %v, want nil", err)
	}
	before := r.Stats()
	a.send(t, ipB, "to nobody")
	if st := r.waitStats(t, before.Received+1); st.NoRoute != before.NoRoute+1 || st.Streams != 0 {
		t.Errorf("stats %+v: want the DATA dropped as to no node, and no stream", st)
	}
	b2 := r.join(t, ipB) // back on UDP
	a.send(t, ipB, "back")
	b2.expect(t, packet{ipA, "back"})
}

// A node has one stream: a second closes the first.
func TestSecondStreamClosesFirst(t *testing.T) {
	r := startServer(t, noLimits)
	_, first := r.serveStream(t, ipA)
	r.joinStream(t, ipA)
	if ok, _ := first.wait(2 * time.Second); !ok {
		t.Fatal("the first stream is still served")
	}
}

// Frames that are not relay messages are dropped as malformed datagrams
// are, and the stream goes on; a frame cut short ends it.
func TestStreamBadFrames(t *testing.T) {
	r := startServer(t, noLimits)
	conn, done := r.serveStream(t, ipA)
	var frames []byte
	for _, m := range [][]byte{nil, []byte("not a relay message"), bytes.Repeat([]byte{'w'}, maxFrame)} {
		frames = binary.BigEndian.AppendUint16(frames, uint16(len(m)))
		frames = append(frames, m...)
	}
	hello := AppendHello(nil, ipA, token(ipA), time.Now(), 1)
	frames = binary.BigEndian.AppendUint16(frames, uint16(len(hello)))
	frames = append(frames, hello...)
	if _, err := conn.Write(frames); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 2+helloAckLen)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil {
		t.Fatalf("no HELLO-ACK after the bad frames: %v", err)
	}
	if nonce, err := ParseHelloAck(ack[2:]); err != nil || nonce != 1 {
		t.Errorf("answer %x: %v, nonce %d", ack, err, nonce)
	}
	if st := r.Stats(); st.Malformed != 3 {
		t.Errorf("stats %+v: want the 3 bad frames counted malformed", st)
	}
	conn.Write([]byte{0, 40, 'w', 'r'}) // 40 bytes promised, 2 sent
	conn.(*net.TCPConn).CloseWrite()
	if ok, err := done.wait(2 * time.Second); !ok {
		t.Fatal("a cut frame did not end the stream")
	} else if err != nil {
		t.Errorf("ServeStream after a cut frame: %v, want nil", err)
	}
}

// A Stream reads messages whole, truncates one longer than the buffer as
// a socket does, and drops what finds its queue full rather than wait.
func TestStreamFraming(t *testing.T) {
	a, b := streamPair(t)
	src := netip.MustParseAddrPort("192.0.2.1:8789")
	sa, sb := NewStream(a, src), NewStream(b, src)
	defer sa.Close()
	defer sb.Close()
	for _, m := range []string{"one", "", strings.Repeat("x", 3000)} {
		if _, err := sa.WriteToUDPAddrPort([]byte(m), netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2000)
	for _, want := range []string{"one", "", strings.Repeat("x", 2000)} {
		n, from, err := sb.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != src {
			t.Fatalf("read %q from %v: %v; want %d bytes from %v", buf[:n], from, err, len(want), src)
		}
	}
	if _, err := sa.WriteToUDPAddrPort(make([]byte, maxFrame+1), netip.AddrPort{}); err == nil {
		t.Error("a message longer than a frame was taken")
	}
	sa.Close()
	if _, err := sa.WriteToUDPAddrPort([]byte("late"), netip.AddrPort{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("writing to a closed stream: %v, want net.ErrClosed", err)
	}
	if _, _, err := sb.ReadFromUDPAddrPort(buf); !errors.Is(err, io.EOF) {
		t.Errorf("reading a stream whose other end closed: %v, want EOF", err)
	}
}

// A stream that nobody reads fills its queue and then drops, without
// blocking the writer.
func TestStreamDropsWhenFull(t *testing.T) {
	a, _ := streamPair(t) // the other end never reads
	s := NewStream(a, netip.AddrPort{})
	defer s.Close()
	msg := make([]byte, 1400)
	deadline := time.Now().Add(10 * time.Second)
	for s.Dropped() == 0 && time.Now().Before(deadline) {
		if _, err := s.WriteToUDPAddrPort(msg, netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
	}
	if s.Dropped() == 0 {
		t.Fatal("writes to a stream nobody reads never dropped")
	}
}

// Probe says HELLO on a Conn nothing reads, and leaves the socket to the
// reader that follows; on a Stream, which has no read deadlines, it says
// it cannot.
func TestProbe(t *testing.T) {
	r := startServer(t, noLimits)
	c, err := NewConn(listen(t), Config{Relay: r.addr, VPNIP: ipA, Token: token(ipA)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Probe(t.Context()); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	b := r.join(t, ipB)
	b.send(t, ipA, "after the probe")
	buf := make([]byte, 100)
	n, from, err := c.ReadFrom(buf)
	if err != nil || from != ipB || string(buf[:n]) != "after the probe" {
		t.Errorf("read after Probe: %q from %v: %v", buf[:n], from, err)
	}

	dead, err := NewConn(listen(t), Config{Relay: netip.MustParseAddrPort("127.0.0.1:9"), VPNIP: ipA, Token: token(ipA)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	if err := dead.Probe(ctx); err == nil {
		t.Error("Probe of a port nothing answers on succeeded")
	}

	conn, _ := r.serveStream(t, ipC)
	sc, err := NewConn(NewStream(conn, r.addr), Config{Relay: r.addr, VPNIP: ipC, Token: token(ipC)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Probe(t.Context()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Probe on a stream: %v, want ErrUnsupported", err)
	}
}

// A Conn over a stream receives many frames at once, those the stream
// has buffered, into one inbox: whole, in order, however long, from the
// relay, and a stranger's frames cannot come since a stream has one peer.
func TestStreamReceive(t *testing.T) {
	a, b := streamPair(t)
	relayAddr := netip.MustParseAddrPort("192.0.2.1:8789")
	sa := NewStream(a, netip.AddrPort{})
	defer sa.Close()
	c, err := NewConn(NewStream(b, relayAddr), Config{Relay: relayAddr, VPNIP: ipB, Token: token(ipB)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want []packet
	for i := range 300 {
		p := fmt.Sprintf("packet %d %s", i, strings.Repeat("x", i*7))
		if i == 100 {
			p = strings.Repeat("y", maxFrame-DataOverhead) // the longest
		}
		want = append(want, packet{ipA, p})
		if _, err := sa.WriteToUDPAddrPort(AppendData(nil, ipA, []byte(p)), netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
		if i == 200 { // a control message among them, taken in
			sa.WriteToUDPAddrPort([]byte("wr"), netip.AddrPort{})
		}
	}
	in := NewInbox()
	var got []packet
	receives := 0
	for len(got) < len(want) {
		if err := c.Receive(in); err != nil {
			t.Fatalf("Receive after %d packets: %v", len(got), err)
		}
		receives++
		for {
			p, peer, ok := in.Next()
			if !ok {
				break
			}
			got = append(got, packet{peer, string(p)})
		}
	}
	if diff := cmp.Diff(want, got, equateAddrs); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if receives > len(want)/2 {
		t.Errorf("%d Receives for %d packets: the stream's buffered frames were not taken at once", receives, len(want))
	}
}
