package stun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"
)

// loopbacks are the networks the server tests run on.
var loopbacks = []struct {
	name, network, host string
}{
	{"IPv4", "udp4", "127.0.0.1"},
	{"IPv6", "udp6", "::1"},
}

// listen opens a UDP socket on host, skipping the test if host is ::1 and
// IPv6 loopback is unavailable.
func listen(t *testing.T, network, host string) net.PacketConn {
	t.Helper()
	conn, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil && host == "::1" {
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startServer runs a Server on host until the test ends, then checks that
// Serve returned nil and left no goroutine behind.
func startServer(t *testing.T, network, host string, opts Options) (*Server, net.Addr) {
	t.Helper()
	before := runtime.NumGoroutine()
	conn := listen(t, network, host)
	srv := NewServer(conn, opts)
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
	return srv, conn.LocalAddr()
}

// checkGoroutines waits a little for the goroutine count to drop to before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines running, want at most %d", runtime.NumGoroutine(), before)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange sends msgs from conn to the server, then a sentinel Binding
// request, and returns the replies that came before the sentinel's answer.
// The server handles one datagram at a time, in order, so a reply to msgs
// would come first.
func exchange(t *testing.T, conn net.PacketConn, srv net.Addr, msgs ...[]byte) [][]byte {
	t.Helper()
	sentinel := NewTxID()
	for _, m := range append(msgs, Request(sentinel)) {
		if _, err := conn.WriteTo(m, srv); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	var replies [][]byte
	for {
		b := readReply(t, conn)
		if tx, _, err := ParseResponse(b); err == nil && tx == sentinel {
			return replies
		}
		replies = append(replies, b)
	}
}

func readReply(t *testing.T, conn net.PacketConn) []byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply from server: %v", err)
	}
	return buf[:n]
}

func localAddrPort(conn net.PacketConn) netip.AddrPort {
	ap, _ := addrPort(conn.LocalAddr())
	return ap
}

func TestServerQuery(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			srv, addr := startServer(t, lo.network, lo.host, Options{})
			client := listen(t, lo.network, lo.host)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := Query(ctx, client, addr)
			if err != nil {
				t.Fatalf("Query: %v", err)
			}
			if want := localAddrPort(client); got != want {
				t.Errorf("Query = %v, want the client's own address %v", got, want)
			}
			checkStats(t, srv, Stats{Requests: 1, Replies: 1})
		})
	}
}

// sizedRequest returns a Binding request of exactly size bytes (a multiple
// of 4, at least 20, or 28 with fingerprint), padded with SOFTWARE.
func sizedRequest(tx TxID, size int, fingerprint bool) []byte {
	b := appendHeader(nil, typeBindingRequest, tx)
	pad := size - headerLen
	if fingerprint {
		pad -= fingerprintLen
	}
	if pad > 0 {
		b = appendAttr(b, attrSoftware, make([]byte, pad-4))
	}
	if fingerprint {
		b = appendFingerprint(b)
	}
	return b
}

// TestServerBoundsAmplification sends requests of every size from a bare
// header up, with and without FINGERPRINT, and checks that each gets the
// minimal response: XOR-MAPPED-ADDRESS, with FINGERPRINT only if asked,
// whatever the request's size, and so never more than 2.2 times it.
func TestServerBoundsAmplification(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			srv, addr := startServer(t, lo.network, lo.host, Options{Rate: rate.Inf})
			client := listen(t, lo.network, lo.host)
			bare := len(Response(TxID{}, localAddrPort(client), false))
			var want Stats
			for size := 20; size <= 72; size += 4 {
				for _, fp := range []bool{false, true} {
					if fp && size < 28 {
						continue
					}
					wantLen := bare
					if fp {
						wantLen += fingerprintLen
					}
					if 5*wantLen > 11*size {
						t.Errorf("a %d-byte request gets %d bytes: over 2.2 times", size, wantLen)
					}
					checkReplySize(t, client, addr, sizedRequest(NewTxID(), size, fp), wantLen)
					want.Requests += 2
					want.Replies += 2 // its own and the sentinel's
				}
			}
			checkStats(t, srv, want)
		})
	}
}

func checkReplySize(t *testing.T, client net.PacketConn, srv net.Addr, req []byte, wantLen int) {
	t.Helper()
	replies := exchange(t, client, srv, req)
	var got []int
	for _, r := range replies {
		got = append(got, len(r))
		if len(r) > MaxResponseLen {
			t.Errorf("%d-byte reply to a %d-byte request", len(r), len(req))
		}
		if _, addr, err := ParseResponse(r); err != nil || addr != localAddrPort(client) {
			t.Errorf("reply to a %d-byte request: %v, %v; want %v", len(req), addr, err, localAddrPort(client))
		}
	}
	var want []int
	if wantLen > 0 {
		want = []int{wantLen}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reply sizes to a %d-byte request (fingerprint %v) (-want +got):\n%s", len(req), findAttr(req, attrFingerprint) >= 0, diff)
	}
}

func TestServerDropsMalformed(t *testing.T) {
	tx := NewTxID()
	tests := []struct {
		name string
		msg  []byte
	}{
		{"not STUN", []byte("what is my address? what is my address? what is my address?")},
		{"19 bytes", Request(tx)[:19]},
		{"truncated request", Request(tx)[:48]},
		{"bad fingerprint", with(Request(tx), 63, Request(tx)[63]^0xff)},
		{"Binding response (reflection)", Response(tx, netip.MustParseAddrPort("192.0.2.1:9"), true)},
		{"Binding indication", build(0x0011, tx, true)},
		{"attribute overruns", with(sizedRequest(tx, 64, false), 23, 0xff)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t, "udp4", "127.0.0.1", Options{})
			client := listen(t, "udp4", "127.0.0.1")
			if replies := exchange(t, client, addr, tt.msg); len(replies) != 0 {
				t.Errorf("got %d replies (%x), want none", len(replies), replies)
			}
			checkStats(t, srv, Stats{Requests: 2, Replies: 1, Malformed: 1})
		})
	}
}

func TestServerLegacy(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			srv, addr := startServer(t, lo.network, lo.host, Options{Legacy: true})
			client := listen(t, lo.network, lo.host)
			me := localAddrPort(client)
			wantJSON := fmt.Sprintf(`{"ip":"%s","port":%d}`, me.Addr(), me.Port())
			long := []byte("wire seed client: what is my public address, please?")
			checkLegacy(t, exchange(t, client, addr, long), wantJSON, me)
			if replies := exchange(t, client, addr, []byte("hi")); len(replies) != 0 {
				t.Errorf("got %q in reply to a 2-byte datagram, want nothing", replies)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if got, err := Query(ctx, client, addr); err != nil || got != me {
				t.Errorf("STUN in Legacy mode: Query = %v, %v; want %v", got, err, me)
			}
			want := Stats{Requests: 5, Replies: 4, Undersized: 1, Legacy: 2}
			checkStats(t, srv, want)
		})
	}
}

func checkLegacy(t *testing.T, replies [][]byte, wantJSON string, me netip.AddrPort) {
	t.Helper()
	if len(replies) != 1 {
		t.Fatalf("got %d replies, want 1 JSON reply", len(replies))
	}
	if got := string(replies[0]); got != wantJSON {
		t.Errorf("legacy reply = %s, want %s", got, wantJSON)
	}
	var v struct {
		IP   string `json:"ip"`
		Port uint16 `json:"port"`
	}
	if err := json.Unmarshal(replies[0], &v); err != nil || v.IP != me.Addr().String() || v.Port != me.Port() {
		t.Errorf("legacy reply decodes to %+v, %v; want %v", v, err, me)
	}
}

func TestServerRateLimit(t *testing.T) {
	srv, addr := startServer(t, "udp4", "127.0.0.1", Options{Rate: 0.001, Burst: 3})
	client := listen(t, "udp4", "127.0.0.1")
	for range 10 {
		if _, err := client.WriteTo(Request(NewTxID()), addr); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		readReply(t, client)
	}
	checkStats(t, srv, Stats{Requests: 10, Replies: 3, RateLimited: 7})
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot check a second source, 127.0.0.2 unavailable: %v", err)
	}
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Query(ctx, other, addr); err != nil {
		t.Errorf("another source IP was limited too: %v", err)
	}
}

// checkStats waits a little for the server's counters to reach want, since
// a client may see a reply before the server counts it.
func checkStats(t *testing.T, srv *Server, want Stats) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); srv.Stats() != want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if diff := cmp.Diff(want, srv.Stats()); diff != "" {
		t.Errorf("Stats mismatch (-want +got):\n%s", diff)
	}
}

func TestServeStops(t *testing.T) {
	tests := []struct {
		name    string
		stop    func(cancel context.CancelFunc, conn net.PacketConn)
		wantErr bool
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ net.PacketConn) { cancel() }, false},
		{"conn closed under it", func(_ context.CancelFunc, conn net.PacketConn) { conn.Close() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			conn := listen(t, "udp4", "127.0.0.1")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- NewServer(conn, Options{}).Serve(ctx) }()
			tt.stop(cancel, conn)
			select {
			case err := <-done:
				if (err != nil) != tt.wantErr {
					t.Errorf("Serve = %v, want error: %v", err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return")
			}
			if _, err := conn.WriteTo([]byte("x"), conn.LocalAddr()); !errors.Is(err, net.ErrClosed) {
				t.Errorf("after Serve, writing to its conn = %v, want net.ErrClosed", err)
			}
			checkGoroutines(t, before)
		})
	}
}

func TestLimiters(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	type step struct {
		after time.Duration // since the start
		ip    netip.Addr
		want  bool
	}
	tests := []struct {
		name        string
		opts        Options
		steps       []step
		wantSources int
	}{
		{"burst then limited", Options{Rate: 1, Burst: 2}, []step{{0, a, true}, {0, a, true}, {0, a, false}, {time.Second, a, true}, {time.Second, a, false}}, 1},
		{"sources apart", Options{Rate: 1, Burst: 1}, []step{{0, a, true}, {0, a, false}, {0, b, true}, {0, b, false}}, 2},
		{"idle sources forgotten", Options{Rate: 1, Burst: 2}, []step{{0, a, true}, {0, b, true}, {3 * time.Second, b, true}}, 1},
		{"no limit", Options{Rate: rate.Inf}, []step{{0, a, true}, {0, a, true}, {0, a, true}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiters(tt.opts)
			start := time.Now()
			for i, s := range tt.steps {
				if got := l.allow(s.ip, start.Add(s.after)); got != s.want {
					t.Errorf("step %d: allow(%v) = %v, want %v", i, s.ip, got, s.want)
				}
			}
			if len(l.m) != tt.wantSources {
				t.Errorf("%d sources kept, want %d", len(l.m), tt.wantSources)
			}
		})
	}
}

// TestLimitersBounded floods the limiters from many sources, as a spoofed
// flood would, and checks the map never outgrows MaxSources.
func TestLimitersBounded(t *testing.T) {
	l := newLimiters(Options{MaxSources: 100})
	now := time.Now()
	for i := range 10000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if !l.allow(ip, now) {
			t.Fatalf("new source %v refused", ip)
		}
		if len(l.m) > 100 {
			t.Fatalf("%d sources kept after %d, want at most 100", len(l.m), i+1)
		}
	}
}

// flakyConn fails its first read, as an ICMP error can on some systems.
type flakyConn struct {
	net.PacketConn
	failed atomic.Bool
}

func (c *flakyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if !c.failed.Swap(true) {
		return 0, nil, errors.New("read udp: connection refused")
	}
	return c.PacketConn.ReadFrom(b)
}

func TestServeSurvivesReadError(t *testing.T) {
	conn := &flakyConn{PacketConn: listen(t, "udp4", "127.0.0.1")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(conn, Options{}).Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	}()
	client := listen(t, "udp4", "127.0.0.1")
	if _, err := Query(timeout(t, 5*time.Second), client, conn.LocalAddr()); err != nil {
		t.Errorf("Query after a read error: %v", err)
	}
	if !conn.failed.Load() {
		t.Error("the read error never happened")
	}
}

// A Responder answers a Binding request with the address it came from,
// gives nothing to other datagrams, and holds each source to its limit.
func TestResponder(t *testing.T) {
	r := NewResponder(Options{Rate: 1, Burst: 2})
	src := netip.MustParseAddrPort("198.51.100.7:40001")
	now := time.Now()
	tx := NewTxID()
	resp := r.Answer(Request(tx), src, now)
	id, got, err := ParseResponse(resp)
	if err != nil || got != src || id != tx {
		t.Fatalf("Answer = %v, %v; want %v", got, err, src)
	}
	if r.Answer([]byte("wr\x01\x02 not stun"), src, now) != nil {
		t.Error("answered a datagram that is not STUN")
	}
	r.Answer(Request(tx), src, now) // the burst's second
	if r.Answer(Request(tx), src, now) != nil {
		t.Error("answered a source over its limit")
	}
	if r.Answer(Request(tx), netip.MustParseAddrPort("198.51.100.8:40001"), now) == nil {
		t.Error("another source is held to the first's limit")
	}
}
