package wg

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/internal/roottest"
	"github.com/wire-mesh/wire/stun"
	"github.com/wire-mesh/wire/stun/stuntest"
)

// udpDatagram is a UDP datagram to port, as a raw socket receives it:
// after an IPv4 header of ihl words when ihl is not zero.
func udpDatagram(ihl int, port uint16, payload []byte) []byte {
	var b []byte
	if ihl > 0 {
		b = make([]byte, 4*ihl)
		b[0] = 0x40 | byte(ihl)
		b[9] = 17
	}
	b = binary.BigEndian.AppendUint16(b, 40000)
	b = binary.BigEndian.AppendUint16(b, port)
	b = binary.BigEndian.AppendUint16(b, uint16(udpHeaderLen+len(payload)))
	b = append(b, 0, 0)
	return append(b, payload...)
}

// TestSidebandFilter runs the raw sockets' filter on what reaches them:
// it must keep STUN, probes and handshake messages to the WireGuard port,
// over IPv4 (with and without IP options) and IPv6, and nothing else.
func TestSidebandFilter(t *testing.T) {
	const port = 51820
	stunAnswer := stun.Response(stun.NewTxID(), netip.MustParseAddrPort("203.0.113.7:51820"), true)
	ping := appendProbe(nil, probePing, 7)
	tests := []struct {
		name    string
		payload []byte
		port    uint16
		keep    bool
	}{
		{"STUN answer", stunAnswer, port, true},
		{"probe", ping, port, true},
		{"WireGuard", wgPacket(1), port, false},
		{"STUN answer to another port", stunAnswer, port + 1, false},
		{"probe to another port", ping, port + 1, false},
		{"empty", nil, port, false},
		{"a byte", []byte{'w'}, port, false},
		{"initiation", initiation(7), port, true},
		{"response", response(7, 8), port, true},
		{"initiation to another port", initiation(7), port + 1, false},
		{"short initiation", initiation(7)[:initiationLength-1], port, false},
		{"initiation of response's length", initiation(7)[:responseLength], port, false},
		{"response of initiation's length", append(response(7, 8), make([]byte, initiationLength-responseLength)...), port, false},
		{"not quite an initiation", append([]byte{msgInitiation, 1}, initiation(7)[2:]...), port, false},
		{"cookie reply", append([]byte{3, 0, 0, 0}, make([]byte, 60)...), port, false},
	}
	for _, family := range []struct {
		name string
		ihl  int
	}{{"IPv4", 5}, {"IPv4 with options", 7}, {"IPv6", 0}} {
		vm, err := bpf.NewVM(sidebandFilter(port, family.ihl > 0))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			kept, err := vm.Run(udpDatagram(family.ihl, tt.port, tt.payload))
			if err != nil {
				t.Fatalf("%s, %s: %v", family.name, tt.name, err)
			}
			if (kept > 0) != tt.keep {
				t.Errorf("%s, %s: filter keeps %d bytes; want kept: %v", family.name, tt.name, kept, tt.keep)
			}
		}
	}
}

// heldPort binds a loopback UDP port, as WireGuard does its own: nothing
// else can bind it, and the socket takes in what arrives there.
func heldPort(t *testing.T) (*net.UDPConn, uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func testRawPort(t *testing.T, port uint16) *rawPort {
	t.Helper()
	r, err := openRawPort(namespace{}, port, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

// TestRawPort uses the sideband of a port that another socket holds: STUN
// learns the port's own mapping, a probe between two such ports is
// answered from the port probed, and so is a userspace engine's ping, sent
// from a plain socket.
func TestRawPort(t *testing.T) {
	roottest.Need(t, "to open raw sockets")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, pa := heldPort(t)
	_, pb := heldPort(t)
	a := testRawPort(t, pa)
	testRawPort(t, pb)
	loopback := netip.MustParseAddr("127.0.0.1")

	got, err := a.discover(ctx, stuntest.Serve(t).AddrPort())
	if want := netip.AddrPortFrom(loopback, pa); err != nil || got != want {
		t.Errorf("discover = %v, %v; want %v", got, err, want)
	}
	if _, err := a.probe(ctx, netip.AddrPortFrom(loopback, pb)); err != nil {
		t.Errorf("probe of another raw port: %v", err)
	}
	if a.v6 != nil {
		if _, err := a.probe(ctx, netip.AddrPortFrom(netip.IPv6Loopback(), pb)); err != nil {
			t.Errorf("probe of another raw port over IPv6: %v", err)
		}
		checksummed(t, a)
	}

	plain, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := plain.WriteToUDPAddrPort(appendProbe(nil, probePing, 42), netip.AddrPortFrom(loopback, pb)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := plain.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no pong to a plain socket's ping: %v", err)
	}
	if want := appendProbe(nil, probePong, 42); string(buf[:n]) != string(want) || from.Port() != pb {
		t.Errorf("answer %x from %v; want %x from port %d", buf[:n], from, want, pb)
	}
}

// TestRawPortHandshakes: the raw port shows the engine the handshake
// messages that reach the port, from where they came, and nothing of the
// other WireGuard messages; the socket that holds the port still gets
// them all.
func TestRawPortHandshakes(t *testing.T) {
	roottest.Need(t, "to open raw sockets")
	held, port := heldPort(t)
	type seen struct {
		msg  string
		from netip.AddrPort
	}
	got := make(chan seen, 8)
	r, err := openRawPort(namespace{}, port, slog.New(slog.DiscardHandler), func(b []byte, from netip.AddrPort) {
		got <- seen{string(b), from} // a copy: the buffer is the reader's
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	peer := listenLoopback(t)
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	msgs := [][]byte{wgPacket(1), initiation(7), wgPacket(2), response(8, 9)}
	for _, m := range msgs {
		if _, err := peer.WriteToUDPAddrPort(m, to); err != nil {
			t.Fatal(err)
		}
	}
	from := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, want := range []seen{{string(initiation(7)), from}, {string(response(8, 9)), from}} {
		select {
		case s := <-got:
			if s != want {
				t.Errorf("the engine was shown %x from %v; want %x from %v", s.msg, s.from, want.msg, want.from)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the engine was not shown %x", want.msg)
		}
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for i := range msgs {
		if _, _, err := held.ReadFromUDP(buf); err != nil {
			t.Fatalf("the port's own socket got %d of %d datagrams: %v", i, len(msgs), err)
		}
	}
	select {
	case s := <-got:
		t.Errorf("the engine was shown %x too", s.msg)
	case <-time.After(50 * time.Millisecond):
	}
}

// checksummed sends a ping from r to a plain IPv6 socket, which takes in
// only datagrams with a UDP checksum (zero means none, which IPv6 forbids).
func checksummed(t *testing.T, r *rawPort) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if err := r.sendTo(appendProbe(nil, probePing, 1), c.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _, err := c.ReadFromUDP(buf); err != nil || !isProbe(buf[:n]) {
		t.Errorf("a plain IPv6 socket got %x, %v from the raw port; want the ping (is the checksum right?)", buf[:n], err)
	}
}

// TestRawPortUnanswered probes a port that holds a plain socket and no
// sideband: the probe must fail, not answer itself.
func TestRawPortUnanswered(t *testing.T) {
	roottest.Need(t, "to open raw sockets")
	_, pa := heldPort(t)
	silent, ps := heldPort(t)
	a := testRawPort(t, pa)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := a.probe(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ps)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("probe of a silent port: %v, want %v", err, context.DeadlineExceeded)
	}
	silent.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	if n, _, err := silent.ReadFromUDP(buf); err != nil || !isProbe(buf[:n]) {
		t.Errorf("the silent port got %x, %v; want the ping", buf[:n], err)
	}
}

// TestRawPortClose checks that close ends a probe that waits, and the
// readers.
func TestRawPortClose(t *testing.T) {
	roottest.Need(t, "to open raw sockets")
	_, pa := heldPort(t)
	_, ps := heldPort(t)
	r, err := openRawPort(namespace{}, pa, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.probe(context.Background(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ps))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	r.close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("probe after close: %v, want %v", err, net.ErrClosed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close left a probe waiting")
	}
}

// BenchmarkRawPortCost measures what an open raw port costs the rest of
// the machine's UDP: datagrams through loopback between two other sockets,
// with and without a raw port open (whose filter drops each one after the
// kernel has cloned it). The two sockets are blocking file descriptors,
// outside Go's poller, as WireGuard's own are in the kernel: else the
// figure would include the Go runtime waking for them. Compare the two in
// one run.
func BenchmarkRawPortCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: opens raw sockets")
	}
	for _, open := range []bool{false, true} {
		name := "no raw port"
		if open {
			name = "raw port open"
		}
		b.Run(name, func(b *testing.B) {
			dst, to := blockingUDP(b)
			src, _ := blockingUDP(b)
			if open {
				r, err := openRawPort(namespace{}, 1, slog.New(slog.DiscardHandler), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer r.close()
			}
			p, buf := make([]byte, 1400), make([]byte, 2048)
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if err := unix.Sendto(src, p, 0, to); err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Read(dst, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// blockingUDP opens a blocking UDP socket on 127.0.0.1.
func blockingUDP(b *testing.B) (int, unix.Sockaddr) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		b.Fatal(err)
	}
	return fd, sa
}
