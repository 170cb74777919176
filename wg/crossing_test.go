package wg

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.zx2c4.com/wireguard/device"
)

// initiation is a handshake initiation's shape with sender index i.
func initiation(i uint32) []byte {
	b := make([]byte, initiationLength)
	b[0] = msgInitiation
	binary.LittleEndian.PutUint32(b[4:], i)
	return b
}

// response is a handshake response's shape from sender index s to
// receiver index r.
func response(s, r uint32) []byte {
	b := make([]byte, responseLength)
	b[0] = msgResponse
	binary.LittleEndian.PutUint32(b[4:], s)
	binary.LittleEndian.PutUint32(b[8:], r)
	return b
}

func TestCrossing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	data := append([]byte{4, 0, 0, 0}, make([]byte, 28)...)
	type step struct {
		sent    []byte // WireGuard sends this, or
		got     []byte // the peer's packet arrives, or
		release []byte // the held initiation's wait is over
		after   time.Duration
		want    verdict // for got
		again   []byte  // for got: sent to the peer again
		goes    bool    // for release
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no initiation of ours", []step{{got: initiation(7), want: pass}}},
		{"crossed, ours wins", []step{
			{sent: initiation(1)},
			{got: initiation(7), after: 10 * time.Millisecond, want: drop, again: initiation(1)},
			{got: response(8, 1), after: 20 * time.Millisecond, want: pass},
		}},
		{"crossed, theirs wins", []step{
			{sent: initiation(9)},
			{got: initiation(7), after: 10 * time.Millisecond, want: hold},
			{release: initiation(7), goes: true},
			{release: initiation(7), goes: false},
			{got: initiation(8), after: 40 * time.Millisecond, want: pass}, // ours is forgotten
		}},
		{"theirs wins, and comes again", []step{
			{sent: initiation(9)},
			{got: initiation(7), after: 10 * time.Millisecond, want: hold},
			{got: initiation(7), after: 11 * time.Millisecond, want: pass},
			{release: initiation(7), goes: false},
		}},
		{"one of theirs passed: ours is forgotten", []step{
			{sent: initiation(1)},
			{got: initiation(1), after: 10 * time.Millisecond, want: pass},
			{got: initiation(7), after: 20 * time.Millisecond, want: pass},
		}},
		{"theirs wins, but ours is answered", []step{
			{sent: initiation(9)},
			{got: initiation(7), after: 10 * time.Millisecond, want: hold},
			{got: response(8, 9), after: 11 * time.Millisecond, want: pass},
			{release: initiation(7), goes: false},
		}},
		{"the same index", []step{
			{sent: initiation(7)},
			{got: initiation(7), after: 10 * time.Millisecond, want: pass},
		}},
		{"ours was answered", []step{
			{sent: initiation(1)},
			{got: response(8, 1), after: 10 * time.Millisecond, want: pass},
			{got: initiation(7), after: 20 * time.Millisecond, want: pass},
		}},
		{"an answer to an older initiation", []step{
			{sent: initiation(1)},
			{got: response(8, 9), after: 10 * time.Millisecond, want: pass},
			{got: initiation(7), after: 20 * time.Millisecond, want: drop, again: initiation(1)},
		}},
		{"a newer initiation of ours", []step{
			{sent: initiation(1)},
			{sent: initiation(9)},
			{got: initiation(7), after: 10 * time.Millisecond, want: hold},
		}},
		{"ours is too old to cross", []step{
			{sent: initiation(1)},
			{got: initiation(7), after: crossingWindow, want: pass},
		}},
		{"data always passes", []step{
			{sent: initiation(1)},
			{got: data, after: time.Millisecond, want: pass},
		}},
		{"a short initiation is not one", []step{
			{sent: initiation(1)[:100]},
			{got: initiation(7), after: time.Millisecond, want: pass},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c crossing
			for i, s := range tt.steps {
				now := t0.Add(s.after)
				switch {
				case s.sent != nil:
					c.sent(s.sent, now)
				case s.release != nil:
					if got := c.release(s.release); got != s.goes {
						t.Errorf("step %d: release = %v, want %v", i, got, s.goes)
					}
				default:
					v, again := c.receive(s.got, now)
					if v != s.want || !bytes.Equal(again, s.again) {
						t.Errorf("step %d: receive = %v, %x; want %v, %x", i, v, again, s.want, s.again)
					}
				}
			}
		})
	}
}

// TestRelayProxyCrossedHandshake: the kernels of A and B send handshake
// initiations to each other at once through the relay. If A's wins (the
// lower sender index), A's proxy does not hand B's to its kernel and
// sends B A's again, so B's kernel answers A's and the handshake
// completes. If B's wins, A's proxy hands it on after answerWait, unless
// an answer to A's came meanwhile.
func TestRelayProxyCrossedHandshake(t *testing.T) {
	for _, tt := range []struct {
		name     string
		own      uint32
		answered bool // B answers A's
		want     []byte
	}{
		{"the lower index keeps its own", 1, true, []byte{msgResponse}},
		{"the higher yields", 9, false, []byte{msgInitiation}},
		{"the higher yields, but is answered", 9, true, []byte{msgResponse}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newProxyFixture(t)
			connB, fromRelayB := f.r.Dial(t, proxyIPB)
			epB, err := f.proxy.endpoint(proxyIPB)
			if err != nil {
				t.Fatal(err)
			}
			f.toPeer(t, initiation(tt.own), epB) // the kernel's
			receive(t, fromRelayB, "B")
			if err := connB.WriteTo(initiation(7), proxyIPA); err != nil { // B's kernel's, crossing it
				t.Fatal(err)
			}
			if tt.own < 7 {
				if p := receive(t, fromRelayB, "B"); !bytes.Equal(p.Payload, initiation(tt.own)) {
					t.Errorf("B got %x again, want A's initiation", p.Payload)
				}
			}
			if tt.answered {
				if err := connB.WriteTo(response(8, tt.own), proxyIPA); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := f.fromKernel(t)
			if got[0] != tt.want[0] {
				t.Errorf("the kernel got message type %d, want %d", got[0], tt.want[0])
			}
			buf := make([]byte, 2048)
			f.kernel.SetReadDeadline(time.Now().Add(4 * answerWait))
			if n, _, err := f.kernel.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("the kernel got message type %d too (%d bytes)", buf[0], n)
			}
		})
	}
}

// TestWitness: what the kernel engine takes as a crossing that it is to
// resolve, from what reaches its port.
func TestWitness(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b := netip.MustParseAddrPort("198.51.100.1:51820"), netip.MustParseAddrPort("198.51.100.2:51820")
	type step struct {
		from  netip.AddrPort
		msg   []byte
		after time.Duration
		again bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"crossed, ours wins", []step{{b, initiation(9), 0, false}, {b, response(5, 3), 10 * time.Millisecond, true}}},
		{"crossed, theirs wins", []step{{b, initiation(2), 0, false}, {b, response(5, 3), 10 * time.Millisecond, false}}},
		{"the same index", []step{{b, initiation(3), 0, false}, {b, response(5, 3), 10 * time.Millisecond, false}}},
		{"ours is the receiver's index", []step{{b, initiation(4), 0, false}, {b, response(9, 3), 10 * time.Millisecond, true}}},
		{"not the sender's", []step{{b, initiation(4), 0, false}, {b, response(1, 7), 10 * time.Millisecond, false}}},
		{"an answer alone", []step{{b, response(5, 3), 0, false}}},
		{"an answer, then their initiation", []step{{b, response(5, 3), 0, false}, {b, initiation(9), 10 * time.Millisecond, false}}},
		{"too far apart", []step{{b, initiation(9), 0, false}, {b, response(5, 3), crossingWindow, false}}},
		{"from another endpoint", []step{{a, initiation(9), 0, false}, {b, response(5, 3), 10 * time.Millisecond, false}}},
		{"once only", []step{
			{b, initiation(9), 0, false},
			{b, response(5, 3), 10 * time.Millisecond, true},
			{b, response(6, 4), 20 * time.Millisecond, false},
		}},
		{"their newest initiation counts", []step{
			{b, initiation(9), 0, false},
			{b, initiation(1), 5 * time.Millisecond, false},
			{b, response(5, 3), 10 * time.Millisecond, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w witness
			for i, s := range tt.steps {
				if got := w.saw(s.msg, s.from, t0.Add(s.after)); got != s.again {
					t.Errorf("step %d: saw = %v, want %v", i, got, s.again)
				}
			}
		})
	}
}

// TestWitnessSweeps: the witness forgets the initiations too old to
// cross once it holds many.
func TestWitnessSweeps(t *testing.T) {
	var w witness
	t0 := time.Unix(1000, 0)
	for i := range 3 * sweepOver {
		ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 51820)
		w.saw(initiation(uint32(i)), ep, t0.Add(time.Duration(i)*crossingWindow))
	}
	if n := len(w.by); n > sweepOver+1 {
		t.Errorf("the witness holds %d initiations, want at most %d", n, sweepOver+1)
	}
}

// TestSweeper: a map is swept when it has doubled since the last sweep,
// and, when full, once a crossingWindow.
func TestSweeper(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s sweeper
	for _, c := range []struct {
		n, full int
		at      time.Time
		want    bool
		swept   int // after the check, a sweep that left this many (-1: none)
	}{
		{sweepOver - 1, math.MaxInt, t0, false, -1},
		{sweepOver, math.MaxInt, t0, true, 300},
		{599, math.MaxInt, t0, false, -1},
		{600, math.MaxInt, t0, true, 900},
		{1000, 1000, t0.Add(crossingWindow / 2), false, -1},
		{1000, 1000, t0.Add(crossingWindow), true, 1000},
		{1000, 1000, t0.Add(crossingWindow + time.Millisecond), false, -1},
	} {
		if got := s.due(c.n, c.full, c.at); got != c.want {
			t.Errorf("due(%d, %d) at %v after the last sweep = %v, want %v", c.n, c.full, c.at.Sub(s.last), got, c.want)
		}
		if c.swept >= 0 {
			s.swept(c.swept, c.at)
		}
	}
}

// TestWitnessFull: a full witness lets new endpoints' initiations pass
// unrecorded, and takes them again once the old have expired.
func TestWitnessFull(t *testing.T) {
	var w witness
	t0 := time.Unix(1000, 0)
	ep := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, byte(i >> 16), byte(i >> 8), byte(i)}), 51820)
	}
	for i := range witnessMax {
		w.saw(initiation(9), ep(i), t0)
	}
	if w.sweep.at < witnessMax {
		t.Errorf("after %d live initiations the witness sweeps again at %d: it sweeps a growing map more often than when it has doubled", witnessMax, w.sweep.at)
	}
	extra := ep(witnessMax)
	w.saw(initiation(9), extra, t0)
	if w.saw(response(5, 3), extra, t0) {
		t.Error("a full witness recorded a new endpoint's initiation")
	}
	later := t0.Add(crossingWindow)
	w.saw(initiation(9), extra, later)
	if !w.saw(response(5, 3), extra, later) {
		t.Error("the witness took no initiation after the old ones expired")
	}
	if n := len(w.by); n > 1 {
		t.Errorf("the witness holds %d initiations after they expired, want at most 1", n)
	}
}

// TestHandshakeOffsets: the offsets of the handshake messages' fields
// that the engines read are wireguard-go's.
func TestHandshakeOffsets(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"initiation's mac1", offMAC1, unsafe.Offsetof(device.MessageInitiation{}.MAC1)},
		{"initiation's sender", 4, unsafe.Offsetof(device.MessageInitiation{}.Sender)},
		{"response's mac1", responseMAC1, unsafe.Offsetof(device.MessageResponse{}.MAC1)},
		{"response's sender", 4, unsafe.Offsetof(device.MessageResponse{}.Sender)},
		{"response's receiver", 8, unsafe.Offsetof(device.MessageResponse{}.Receiver)},
		{"initiation's length", initiationLength, device.MessageInitiationSize},
		{"response's length", responseLength, device.MessageResponseSize},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, wireguard-go's %d", c.name, c.got, c.want)
		}
	}
}
