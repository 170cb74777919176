package relay

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/wire-mesh/wire/stun"
)

var (
	testIP    = netip.MustParseAddr("10.77.0.1")
	testToken = bytes.Repeat([]byte{7}, TokenLen)
	testNow   = time.UnixMilli(1_760_000_000_123)
)

// equateAddrs lets cmp compare netip values.
var equateAddrs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// helloFields is Hello without its unexported mac, for cmp.
type helloFields struct {
	VPNIP netip.Addr
	Time  time.Time
	Nonce uint64
}

func TestHelloRoundTrip(t *testing.T) {
	for _, ip := range []netip.Addr{testIP, netip.MustParseAddr("::ffff:10.77.0.1"), netip.MustParseAddr("255.255.255.255")} {
		b := AppendHello([]byte("prefix"), ip, testToken, testNow, 0xdeadbeefcafe)
		h, err := ParseHello(b[len("prefix"):])
		if err != nil {
			t.Fatalf("ParseHello(AppendHello(%v)) = %v", ip, err)
		}
		want := helloFields{ip.Unmap(), testNow, 0xdeadbeefcafe}
		if diff := cmp.Diff(want, helloFields{h.VPNIP, h.Time, h.Nonce}, equateAddrs); diff != "" {
			t.Errorf("ParseHello(AppendHello(%v)) mismatch (-want +got):\n%s", ip, diff)
		}
		if err := h.Verify(testToken, testNow); err != nil {
			t.Errorf("Verify of AppendHello(%v) = %v, want nil", ip, err)
		}
		if len(b)-len("prefix") != helloLen {
			t.Errorf("HELLO is %d bytes, want %d", len(b)-len("prefix"), helloLen)
		}
	}
}

func TestHelloRejected(t *testing.T) {
	hello := func(now time.Time) []byte { return AppendHello(nil, testIP, testToken, now, 1) }
	flip := func(b []byte, i int) []byte { b[i] ^= 1; return b }
	set := func(b []byte, i int, v byte) []byte { b[i] = v; return b }
	tests := []struct {
		name    string
		b       []byte
		token   []byte
		wantErr error
	}{
		{"other token", hello(testNow), bytes.Repeat([]byte{8}, TokenLen), ErrBadMAC},
		{"mac flipped", flip(hello(testNow), helloLen-1), testToken, ErrBadMAC},
		{"vpnIP changed", flip(hello(testNow), 7), testToken, ErrBadMAC},
		{"timestamp changed", flip(hello(testNow), 15), testToken, ErrBadMAC},
		{"nonce changed", flip(hello(testNow), 23), testToken, ErrBadMAC},
		{"61 s old", hello(testNow.Add(-61 * time.Second)), testToken, ErrStale},
		{"61 s ahead", hello(testNow.Add(61 * time.Second)), testToken, ErrStale},
		{"59 s old", hello(testNow.Add(-59 * time.Second)), testToken, nil},
		{"59 s ahead", hello(testNow.Add(59 * time.Second)), testToken, nil},
		{"version 2", set(hello(testNow), 2, 2), testToken, ErrVersion},
		{"version 0", set(hello(testNow), 2, 0), testToken, ErrVersion},
		{"type ack", append(hello(testNow)[:3], typeHelloAck), testToken, ErrMalformed},
		{"one byte short", hello(testNow)[:helloLen-1], testToken, ErrMalformed},
		{"one byte long", append(hello(testNow), 0), testToken, ErrMalformed},
		{"header only", hello(testNow)[:headerLen], testToken, ErrMalformed},
		{"three bytes", []byte("wr\x01"), testToken, ErrNotRelay},
		{"empty", nil, testToken, ErrNotRelay},
		{"WireGuard", make([]byte, helloLen), testToken, ErrNotRelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHello(tt.b)
			if err == nil {
				err = h.Verify(tt.token, testNow)
			}
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("parse and verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestDataRoundTrip(t *testing.T) {
	for _, payload := range [][]byte{nil, {4, 0, 0, 0}, bytes.Repeat([]byte{0xab}, 1420)} {
		b := AppendData(nil, testIP, payload)
		if len(b) != len(payload)+DataOverhead {
			t.Errorf("DATA with %d-byte payload is %d bytes, want %d", len(payload), len(b), len(payload)+DataOverhead)
		}
		peer, got, err := ParseData(b)
		if err != nil || peer != testIP || !bytes.Equal(got, payload) {
			t.Errorf("ParseData(AppendData(%v, %d bytes)) = %v, %d bytes, %v", testIP, len(payload), peer, len(got), err)
		}
	}
}

func TestDataRejected(t *testing.T) {
	data := AppendData(nil, testIP, []byte("ciphertext"))
	tests := []struct {
		name    string
		b       []byte
		wantErr error
	}{
		{"version 2", append([]byte{'w', 'r', 2, typeData}, data[4:]...), ErrVersion},
		{"type hello", append([]byte{'w', 'r', 1, typeHello}, data[4:]...), ErrMalformed},
		{"type 0", append([]byte{'w', 'r', 1, 0}, data[4:]...), ErrMalformed},
		{"no address", data[:headerLen], ErrMalformed},
		{"short address", data[:DataOverhead-1], ErrMalformed},
		{"not relay", append([]byte{'w', 'R'}, data[2:]...), ErrNotRelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseData(tt.b); !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseData(%x) = %v, want %v", tt.b, err, tt.wantErr)
			}
		})
	}
}

func TestHelloAck(t *testing.T) {
	b := AppendHelloAck(nil, 42)
	if n, err := ParseHelloAck(b); err != nil || n != 42 {
		t.Errorf("ParseHelloAck(AppendHelloAck(42)) = %d, %v", n, err)
	}
	if len(b) >= helloLen {
		t.Errorf("HELLO-ACK is %d bytes, not smaller than the %d-byte HELLO", len(b), helloLen)
	}
	if _, err := ParseHelloAck(b[:len(b)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseHelloAck(short) = %v, want ErrMalformed", err)
	}
}

// TestIs checks that relay messages are told apart from what else arrives
// on a WireGuard socket.
func TestIs(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"HELLO", AppendHello(nil, testIP, testToken, testNow, 1), true},
		{"HELLO-ACK", AppendHelloAck(nil, 1), true},
		{"DATA", AppendData(nil, testIP, nil), true},
		{"future version", []byte{'w', 'r', 9, 9}, true},
		{"STUN request", stun.Request(stun.NewTxID()), false},
		{"WireGuard initiation", append([]byte{1, 0, 0, 0}, make([]byte, 144)...), false},
		{"WireGuard response", append([]byte{2, 0, 0, 0}, make([]byte, 88)...), false},
		{"WireGuard cookie", append([]byte{3, 0, 0, 0}, make([]byte, 60)...), false},
		{"WireGuard transport", append([]byte{4, 0, 0, 0}, make([]byte, 28)...), false},
		{"short", []byte("wr"), false},
	}
	for _, tt := range tests {
		if got := Is(tt.b); got != tt.want {
			t.Errorf("Is(%s) = %v, want %v", tt.name, got, tt.want)
		}
		if tt.want && stun.Is(tt.b) {
			t.Errorf("stun.Is(%s) = true", tt.name)
		}
	}
}

// HELLO-STALE is shorter than the HELLO it answers, so the relay never
// amplifies with it, and carries the relay's time under the node's token:
// one made with another token is refused.
func TestHelloStale(t *testing.T) {
	tok, other := token(ipA), token(ipB)
	now := time.UnixMilli(1764000000123)
	b := AppendHelloStale(nil, tok, 42, now)
	if len(b) >= helloLen {
		t.Errorf("HELLO-STALE is %d bytes, the HELLO %d: it must be shorter", len(b), helloLen)
	}
	nonce, at, err := ParseHelloStale(b, tok)
	if err != nil || nonce != 42 || !at.Equal(now) {
		t.Errorf("ParseHelloStale = %d, %v, %v", nonce, at, err)
	}
	if _, _, err := ParseHelloStale(b, other); !errors.Is(err, ErrBadMAC) {
		t.Errorf("with another token: %v, want ErrBadMAC", err)
	}
	b[len(b)-1] ^= 1
	if _, _, err := ParseHelloStale(b, tok); !errors.Is(err, ErrBadMAC) {
		t.Errorf("tampered: %v, want ErrBadMAC", err)
	}
}
