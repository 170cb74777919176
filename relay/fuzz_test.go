package relay

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// The seed corpus is in testdata/fuzz/FuzzParse: each message type, near
// misses, and WireGuard and STUN packets.

func FuzzParse(f *testing.F) {
	tokens := &mapTokens{m: map[netip.Addr][]byte{testIP: testToken}}
	srv := NewServer(nil, tokens, Options{})
	srv.conn = discard{}
	src := netip.MustParseAddrPort("192.0.2.1:51820")
	f.Fuzz(func(t *testing.T, b []byte) {
		checkData(t, b)
		checkHello(t, b)
		if n, err := ParseHelloAck(b); err == nil && !bytes.Equal(AppendHelloAck(nil, n), b) {
			t.Errorf("HELLO-ACK %x re-encodes as %x", b, AppendHelloAck(nil, n))
		}
		srv.handle(bytes.Clone(b), src, testNow, nil)
	})
}

// checkData checks that accepted DATA re-encodes identically, and that Is
// agrees with the parser.
func checkData(t *testing.T, b []byte) {
	peer, payload, err := ParseData(b)
	if Is(b) == errors.Is(err, ErrNotRelay) {
		t.Errorf("Is(%x) = %v, but ParseData says %v", b, Is(b), err)
	}
	if err != nil {
		return
	}
	if got := AppendData(nil, peer, payload); !bytes.Equal(got, b) {
		t.Errorf("DATA %x re-encodes as %x", b, got)
	}
}

// checkHello checks that an accepted HELLO re-encodes identically, and
// that only the right token verifies it.
func checkHello(t *testing.T, b []byte) {
	h, err := ParseHello(b)
	if err != nil {
		return
	}
	signed := appendHelloSigned(nil, h.VPNIP, h.Time.UnixMilli(), h.Nonce)
	if got := append(signed, h.mac[:]...); !bytes.Equal(got, b) {
		t.Errorf("HELLO %x re-encodes as %x", b, got)
	}
	mac := helloMAC(testToken, b[:helloSignedLen])
	want := bytes.Equal(mac[:], b[helloSignedLen:])
	if err := h.Verify(testToken, h.Time); (err == nil) != want {
		t.Errorf("Verify(%x) = %v, mac matches: %v", b, err, want)
	}
	if err := h.Verify(testToken, h.Time.Add(Window+time.Millisecond)); err == nil {
		t.Errorf("Verify(%x) accepted a stale HELLO", b)
	}
}

// discard is a udpConn whose writes go nowhere.
type discard struct{ udpConn }

func (discard) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	return len(b), nil
}
