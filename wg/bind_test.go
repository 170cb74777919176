package wg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/wire-mesh/wire/stun"
	"github.com/wire-mesh/wire/stun/stuntest"
)

// wgPacket returns a datagram shaped like a WireGuard transport message:
// type 4, receiver index, counter, then payload.
func wgPacket(i int) []byte {
	p := make([]byte, 16+32)
	p[0] = 4
	binary.LittleEndian.PutUint32(p[4:], uint32(i))
	binary.LittleEndian.PutUint64(p[8:], uint64(i))
	return p
}

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receiveAll runs fn until it fails, sending a copy of each datagram it
// passes on to got.
func receiveAll(fn conn.ReceiveFunc, batch int, got chan<- []byte) {
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	for {
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			return
		}
		for i := range n {
			if sizes[i] > 0 {
				got <- bytes.Clone(bufs[i][:sizes[i]])
			}
		}
	}
}

// TestBindDemux runs Discover over loopback against a real STUN server
// while WireGuard-shaped datagrams and a stray STUN answer arrive on the
// same socket: WireGuard must get all of its datagrams and no STUN one,
// and Discover must report the WireGuard port.
func TestBindDemux(t *testing.T) {
	b := newBind(conn.NewDefaultBind(), namespace{})
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1000)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); receiveAll(fn, b.BatchSize(), got) }()
	}
	defer wg.Wait()
	defer b.Close()

	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	noise := listenLoopback(t)
	const n = 200
	stop := make(chan struct{})
	go func() {
		for i := range n {
			noise.WriteTo(wgPacket(i), to)
			if i == n/2 {
				noise.WriteTo(stun.Response(stun.NewTxID(), netip.MustParseAddrPort("203.0.113.1:1"), true), to)
			}
		}
		close(stop)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := stuntest.Serve(t)
	mapped, err := b.discover(ctx, srv.AddrPort())
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port); err != nil || mapped != want {
		t.Errorf("discover = %v, %v; want %v", mapped, err, want)
	}
	<-stop
	seen := make(map[uint32]bool)
	for len(seen) < n {
		select {
		case p := <-got:
			if stun.Is(p) {
				t.Fatalf("a STUN datagram reached WireGuard: %x", p)
			}
			seen[binary.LittleEndian.Uint32(p[4:])] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("WireGuard got %d of %d datagrams", len(seen), n)
		}
	}
}

// fakeReceive returns a ReceiveFunc that fills the batch with packets,
// from the endpoints eps, every time.
func fakeReceive(packets [][]byte, from []conn.Endpoint) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i, p := range packets {
			sizes[i] = copy(bufs[i], p)
			eps[i] = from[i]
		}
		return len(packets), nil
	}
}

func TestFilter(t *testing.T) {
	server := netip.MustParseAddrPort("192.0.2.1:3478")
	other := netip.MustParseAddrPort("192.0.2.99:3478")
	mapped := netip.MustParseAddrPort("203.0.113.7:51820")
	tx, stray := stun.NewTxID(), stun.NewTxID()
	answer, strayAnswer := stun.Response(tx, mapped, true), stun.Response(stray, mapped, true)
	type packet struct {
		data []byte
		from netip.AddrPort
	}
	tests := []struct {
		name      string
		batch     []packet
		wantSizes []int
		delivered bool
	}{
		{"WireGuard only", []packet{{wgPacket(1), server}, {wgPacket(2), other}}, []int{48, 48}, false},
		{"answer in the middle", []packet{{wgPacket(1), other}, {answer, server}, {wgPacket(2), other}}, []int{48, 0, 48}, true},
		{"answer alone", []packet{{answer, server}}, []int{0}, true},
		{"answer from another address", []packet{{answer, other}, {wgPacket(1), other}}, []int{0, 48}, false},
		{"answer to another transaction", []packet{{strayAnswer, server}}, []int{0}, false},
		{"request", []packet{{stun.Request(tx), server}}, []int{0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBind(conn.NewDefaultBind(), namespace{})
			got := b.expect(tx, server)
			var data [][]byte
			var from []conn.Endpoint
			for _, p := range tt.batch {
				data = append(data, p.data)
				from = append(from, &conn.StdNetEndpoint{AddrPort: p.from})
			}
			sizes, eps := make([]int, len(data)), make([]conn.Endpoint, len(data))
			bufs := make([][]byte, len(data))
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			n, err := b.filter(fakeReceive(data, from), true)(bufs, sizes, eps)
			if err != nil || n != len(data) {
				t.Fatalf("filter = %d, %v; want %d, nil", n, err, len(data))
			}
			for i := range n {
				if sizes[i] != tt.wantSizes[i] {
					t.Errorf("size %d = %d, want %d", i, sizes[i], tt.wantSizes[i])
				}
			}
			select {
			case a := <-got:
				if !tt.delivered || a != mapped {
					t.Errorf("delivered %v, want delivered: %v", a, tt.delivered)
				}
			default:
				if tt.delivered {
					t.Error("answer not delivered")
				}
			}
		})
	}
}

// TestFilterAllocs checks that the filter costs no allocation, for a full
// batch of WireGuard datagrams with STUN answers among them, whether a
// discovery waits for them or not.
func TestFilterAllocs(t *testing.T) {
	server := netip.MustParseAddrPort("192.0.2.1:3478")
	tx := stun.NewTxID()
	var data [][]byte
	var from []conn.Endpoint
	for i := range conn.IdealBatchSize {
		p := wgPacket(i)
		if i%32 == 5 {
			p = stun.Response(tx, netip.MustParseAddrPort("203.0.113.7:51820"), true)
		}
		data = append(data, p)
		from = append(from, &conn.StdNetEndpoint{AddrPort: server})
	}
	bufs := make([][]byte, len(data))
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes, eps := make([]int, len(data)), make([]conn.Endpoint, len(data))
	for _, waiting := range []bool{false, true} {
		b := newBind(conn.NewDefaultBind(), namespace{})
		if waiting {
			b.expect(tx, server)
		}
		fn := b.filter(fakeReceive(data, from), true)
		if allocs := testing.AllocsPerRun(100, func() { fn(bufs, sizes, eps) }); allocs != 0 {
			t.Errorf("waiting %v: filter allocates %v times per batch, want 0", waiting, allocs)
		}
	}
}

func TestDiscoverGivesUp(t *testing.T) {
	b := newBind(conn.NewDefaultBind(), namespace{})
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	silent := listenLoopback(t).LocalAddr().(*net.UDPAddr).AddrPort()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := b.discover(ctx, silent); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("discover from a silent server: %v, want %v", err, context.DeadlineExceeded)
	}

	done := make(chan error, 1)
	go func() {
		_, err := b.discover(context.Background(), silent)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	b.shutdown()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("discover when the engine closes: %v, want %v", err, net.ErrClosed)
	}
	if len(b.pending) != 0 {
		t.Errorf("%d discoveries still pending", len(b.pending))
	}
}

// TestDiscoverRetransmits drops the first request: discover must send it
// again from the WireGuard port.
func TestDiscoverRetransmits(t *testing.T) {
	b := newBind(conn.NewDefaultBind(), namespace{})
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range fns {
		go receiveAll(fn, b.BatchSize(), make(chan []byte, 100))
	}
	defer b.Close()
	srv := listenLoopback(t)
	go func() {
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if tx, _, err := stun.ParseBindingRequest(buf[:n]); err == nil && i > 0 {
				srv.WriteToUDP(stun.Response(tx, from.AddrPort(), true), from)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	got, err := b.discover(ctx, srv.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil || got.Port() != port {
		t.Errorf("discover = %v, %v; want port %d", got, err, port)
	}
	if elapsed := time.Since(start); elapsed < initialRTO {
		t.Errorf("answered after %v, before the first retransmission was due", elapsed)
	}
}
