//go:build linux

package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// sized returns n datagrams of size bytes, each starting with its number
// and the tag, so that any reordering or mixing shows.
func sized(tag string, n, size int) [][]byte {
	var out [][]byte
	for i := range n {
		b := bytes.Repeat([]byte{'.'}, size)
		copy(b, fmt.Sprintf("%s%d", tag, i))
		out = append(out, b)
	}
	return out
}

// TestWriteSegments checks how write groups datagrams into segmented
// messages, with and without GSO, and that a receiver without GRO gets
// each datagram whole, once, in order.
func TestWriteSegments(t *testing.T) {
	connA, connB := listen(t), listen(t)
	a, b := addrOf(connA), addrOf(connB)
	prefix := []byte("hdr:")
	type dgram struct {
		size int
		to   netip.AddrPort
	}
	run := func(n, size int, to netip.AddrPort) []dgram {
		var out []dgram
		for range n {
			out = append(out, dgram{size, to})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		prefix []byte
		dgrams []dgram
		runs   []int // with GSO
	}{
		{"one run", nil, run(10, 1200, a), []int{10}},
		{"more than a message holds", nil, run(maxSegments+6, 1000, a), []int{maxSegments, 6}},
		{"shorter last", nil, slices.Concat(run(3, 1200, a), run(1, 700, a), run(2, 1200, a)), []int{4, 2}},
		{"longer breaks", nil, slices.Concat(run(2, 700, a), run(2, 1200, a)), []int{2, 2}},
		{"destinations", nil, slices.Concat(run(2, 500, a), run(1, 500, b), run(2, 500, a)), []int{2, 1, 2}},
		{"bytes", nil, run(3, 30_000, a), []int{2, 1}},
		{"prefix", prefix, slices.Concat(run(3, 996, a), run(1, 10, a)), []int{4}},
	} {
		for _, gso := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gso=%v", tc.name, gso), func(t *testing.T) {
				w := newBatchIO(listen(t))
				if w == nil {
					t.Skip("no batch I/O on this platform")
				}
				if gso && !w.gso {
					t.Skip("the kernel has no UDP_SEGMENT")
				}
				w.gso = gso
				var bufs [][]byte
				var to []netip.AddrPort
				want := map[netip.AddrPort][][]byte{}
				for i, d := range tc.dgrams {
					buf := sized(fmt.Sprintf("%d:", i), 1, d.size-len(tc.prefix))[0]
					bufs, to = append(bufs, buf), append(to, d.to)
					want[d.to] = append(want[d.to], slices.Concat(tc.prefix, buf))
				}
				var runs []int
				for sent := 0; sent < len(bufs); {
					n, err := w.write(tc.prefix, bufs[sent:], to[sent:])
					if err != nil || n == 0 {
						t.Fatalf("write after %d: %d, %v", sent, n, err)
					}
					for _, r := range w.runs {
						if n <= 0 {
							break
						}
						runs, n, sent = append(runs, r), n-r, sent+r
					}
				}
				wantRuns := tc.runs
				if !gso {
					wantRuns = slices.Repeat([]int{1}, len(bufs))
				}
				if !slices.Equal(runs, wantRuns) {
					t.Errorf("messages carried %v datagrams, want %v", runs, wantRuns)
				}
				if diff := cmp.Diff(want[a], readRaw(t, connA, len(want[a]))); diff != "" {
					t.Errorf("A received (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(want[b], readRaw(t, connB, len(want[b]))); diff != "" {
					t.Errorf("B received (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestReadGRO sends a segmented message to a socket with GRO on: read
// returns it as one message that splits back into the datagrams sent,
// and a datagram sent alone comes alone.
func TestReadGRO(t *testing.T) {
	connR := listen(t)
	r, w := newBatchIO(connR), newBatchIO(listen(t))
	if r == nil || w == nil {
		t.Skip("no batch I/O on this platform")
	}
	if !w.gso || !r.enableGRO() {
		t.Skip("the kernel has no UDP_SEGMENT or UDP_GRO")
	}
	sent := slices.Concat(sized("a", 20, 1000), sized("b", 1, 400), sized("c", 1, 1000))
	to := []netip.AddrPort{addrOf(connR)}
	for off := 0; off < len(sent); {
		n, err := w.write(nil, sent[off:], to)
		if err != nil {
			t.Fatal(err)
		}
		off += n
	}
	bufs := [][]byte{make([]byte, maxDatagram), make([]byte, maxDatagram)}
	sizes, segs, from := make([]int, 2), make([]int, 2), make([]netip.AddrPort, 2)
	var got [][]byte
	var msgs []int // datagrams per message
	connR.SetReadDeadline(time.Now().Add(time.Second))
	for len(got) < len(sent) {
		n, err := r.read(bufs, sizes, segs, from)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		for i := range n {
			had := len(got)
			got = appendSegments(got, bytes.Clone(bufs[i][:sizes[i]]), segs[i])
			msgs = append(msgs, len(got)-had)
		}
	}
	if diff := cmp.Diff(sent, got); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if !slices.Equal(msgs, []int{21, 1}) {
		t.Errorf("messages read held %v datagrams, want [21 1]", msgs)
	}
}

// TestWriteSegmentedRefused: when the kernel refuses a segmented message,
// write sends its datagrams one by one, so that only the refused one is
// lost, and it keeps segmenting.
func TestWriteSegmentedRefused(t *testing.T) {
	good := listen(t)
	w := newBatchIO(listen(t))
	if w == nil || !w.gso {
		t.Skip("no UDP_SEGMENT here")
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:5") // an IPv4 socket cannot send there
	bufs := sized("x", 5, 500)
	to := []netip.AddrPort{v6, v6, v6, addrOf(good), addrOf(good)}
	var refused []error
	for i := 0; i < len(bufs); {
		n, err := w.write(nil, bufs[i:], to[i:])
		if n == 0 {
			refused = append(refused, err)
			n = 1
		}
		i += n
	}
	if len(refused) != 3 {
		t.Errorf("refused %v, want the 3 datagrams to an IPv6 address", refused)
	}
	if diff := cmp.Diff(bufs[3:], readRaw(t, good, 2)); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if !w.gso {
		t.Error("a refused address turned GSO off")
	}
}

// TestGROSize reads the segment size out of control messages.
func TestGROSize(t *testing.T) {
	cmsg := func(level, typ int32, v int32) []byte {
		b := make([]byte, unix.CmsgSpace(4))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(4))
		*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = v
		return b
	}
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, 1452)
	other := cmsg(unix.SOL_IP, unix.IP_TOS, 7)
	for _, tc := range []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, 0},
		{"gro", gro, 1452},
		{"after another", slices.Concat(other, gro), 1452},
		{"another only", other, 0},
		{"truncated", gro[:unix.SizeofCmsghdr+2], 0},
		{"bad length", slices.Concat([]byte{3, 0, 0, 0, 0, 0, 0, 0}, gro[8:]), 0},
	} {
		if got := groSize(tc.oob); got != tc.want {
			t.Errorf("%s: groSize = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestServeSegmented sends runs of equal datagrams, which go segmented,
// through a serving relay to a Conn with GRO: each arrives once, intact,
// in order, and the relay counts each.
func TestServeSegmented(t *testing.T) {
	r := startServer(t, noLimits)
	a, b := r.join(t, ipA), r.join(t, ipB)
	payloads := slices.Concat(sized("p", 150, 1400), sized("q", 1, 100))
	var want []packet
	for _, p := range payloads {
		want = append(want, packet{ipA, string(p)})
	}
	if err := a.WriteBatch(payloads, ipB); err != nil {
		t.Fatal(err)
	}
	b.expect(t, want...)
	if st := r.waitStats(t, 2+uint64(len(payloads))); st.Forwarded != uint64(len(payloads)) {
		t.Errorf("Forwarded = %d, want %d", st.Forwarded, len(payloads))
	}
}
