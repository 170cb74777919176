package wg

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
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
		sent   []byte // WireGuard sends this, or
		got    []byte // the peer's packet arrives
		after  time.Duration
		keep   bool
		passes bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no initiation of ours", []step{{got: initiation(7), keep: true, passes: true}}},
		{"crossed, we keep ours", []step{
			{sent: initiation(1)},
			{got: initiation(7), after: 10 * time.Millisecond, keep: true, passes: false},
			{got: response(8, 1), after: 20 * time.Millisecond, keep: true, passes: true},
		}},
		{"crossed, we yield", []step{
			{sent: initiation(1)},
			{got: initiation(7), after: 10 * time.Millisecond, keep: false, passes: true},
		}},
		{"ours was answered", []step{
			{sent: initiation(1)},
			{got: response(8, 1), after: 10 * time.Millisecond, keep: true, passes: true},
			{got: initiation(7), after: 20 * time.Millisecond, keep: true, passes: true},
		}},
		{"an answer to an older initiation", []step{
			{sent: initiation(1)},
			{got: response(8, 9), after: 10 * time.Millisecond, keep: true, passes: true},
			{got: initiation(7), after: 20 * time.Millisecond, keep: true, passes: false},
		}},
		{"ours is too old to cross", []step{
			{sent: initiation(1)},
			{got: initiation(7), after: crossingWindow, keep: true, passes: true},
		}},
		{"data always passes", []step{
			{sent: initiation(1)},
			{got: data, after: time.Millisecond, keep: true, passes: true},
		}},
		{"a short initiation is not one", []step{
			{sent: initiation(1)[:100]},
			{got: initiation(7), after: time.Millisecond, keep: true, passes: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c crossing
			for i, s := range tt.steps {
				now := t0.Add(s.after)
				if s.sent != nil {
					c.sent(s.sent, now)
					continue
				}
				if got := c.pass(s.got, s.keep, now); got != s.passes {
					t.Errorf("step %d: pass = %v, want %v", i, got, s.passes)
				}
			}
		})
	}
}

func TestKeepsOwn(t *testing.T) {
	a, b := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	if !keepsOwn(a, b) || keepsOwn(b, a) {
		t.Errorf("keepsOwn(%v, %v), keepsOwn(%v, %v) = %v, %v; want exactly the lower to keep", a, b, b, a, keepsOwn(a, b), keepsOwn(b, a))
	}
	if keepsOwn(netip.Addr{}, b) {
		t.Error("an end that does not know its address keeps its own")
	}
}

// TestRelayProxyCrossedHandshake: the kernels of A and B send handshake
// initiations to each other at once through the relay. A, the lower
// address, does not hand B's to its kernel, so B's kernel answers A's and
// the handshake completes; B hands A's on.
func TestRelayProxyCrossedHandshake(t *testing.T) {
	for _, tt := range []struct {
		name   string
		self   netip.Addr
		passes bool
	}{
		{"lower address keeps its own", proxyIPA, false},
		{"higher address yields", netip.MustParseAddr("10.99.0.9"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newProxyFixture(t)
			f.proxy.setSelf(tt.self)
			connB, fromRelayB := f.r.Dial(t, proxyIPB)
			epB, err := f.proxy.endpoint(proxyIPB)
			if err != nil {
				t.Fatal(err)
			}
			f.toPeer(t, initiation(1), epB) // the kernel's
			receive(t, fromRelayB, "B")
			if err := connB.WriteTo(initiation(7), proxyIPA); err != nil { // B's kernel's, crossing it
				t.Fatal(err)
			}
			if err := connB.WriteTo(response(8, 1), proxyIPA); err != nil { // B's kernel answers A's
				t.Fatal(err)
			}
			got, _ := f.fromKernel(t)
			if tt.passes {
				if got[0] != msgInitiation {
					t.Fatalf("the kernel got message type %d first, want B's initiation", got[0])
				}
				got, _ = f.fromKernel(t)
			}
			if got[0] != msgResponse {
				t.Errorf("the kernel got message type %d, want B's response", got[0])
			}
		})
	}
}
