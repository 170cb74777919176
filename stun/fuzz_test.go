package stun

import (
	"errors"
	"net/netip"
	"testing"
)

// The seed corpora are in testdata/fuzz: the RFC 5769 vectors, our own
// messages, and near misses.

func FuzzParseBindingRequest(f *testing.F) {
	srv := NewServer(nil, Options{Legacy: true})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, fp, err := ParseBindingRequest(b)
		checkIs(t, b, err)
		checkAmplification(t, srv, b)
		if err != nil {
			return
		}
		for _, addr := range fuzzAddrs(tx) {
			gotTx, got, err := ParseResponse(Response(tx, addr, fp))
			want := netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
			if err != nil || gotTx != tx || got != want {
				t.Errorf("Response(%x, %v, %v) parses to %x, %v, %v", tx, addr, fp, gotTx, got, err)
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, addr, err := ParseResponse(b)
		checkIs(t, b, err)
		if err != nil {
			return
		}
		if !addr.IsValid() || addr.Addr().Is4In6() {
			t.Fatalf("ParseResponse accepted %x with address %v", b, addr)
		}
		for _, fp := range []bool{false, true} {
			gotTx, got, err := ParseResponse(Response(tx, addr, fp))
			if err != nil || gotTx != tx || got != addr {
				t.Errorf("Response(%x, %v, %v) parses to %x, %v, %v", tx, addr, fp, gotTx, got, err)
			}
		}
	})
}

// checkIs checks that Is and a parse error agree on what is STUN.
func checkIs(t *testing.T, b []byte, err error) {
	if Is(b) == errors.Is(err, ErrNotSTUN) {
		t.Errorf("Is(%x) = %v, but parsing says %v", b, Is(b), err)
	}
}

// longestSources give the longest replies, in JSON as in STUN.
var longestSources = []netip.AddrPort{
	netip.MustParseAddrPort("255.255.255.255:65535"),
	netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
}

// checkAmplification checks the bounds on the server's answer to b: a
// valid request gets a response no larger than MaxResponseLen and 2.2
// times b; anything else gets nothing, or in Legacy mode a JSON reply no
// larger than b.
func checkAmplification(t *testing.T, srv *Server, b []byte) {
	_, _, err := ParseBindingRequest(b)
	for _, src := range longestSources {
		r := srv.reply(b, src)
		switch {
		case err == nil && (len(r) > MaxResponseLen || 5*len(r) > 11*len(b)):
			t.Errorf("%d-byte response to a %d-byte request from %v: %x", len(r), len(b), src, b)
		case err != nil && len(r) > len(b):
			t.Errorf("%d-byte reply to %d bytes that are no request, from %v: %x", len(r), len(b), src, b)
		case err != nil && !errors.Is(err, ErrNotSTUN) && r != nil:
			t.Errorf("a reply to a malformed STUN message (%v) from %v: %x", err, src, b)
		}
	}
}

// fuzzAddrs makes an IPv4 and an IPv6 address (possibly IPv4-mapped) from
// the transaction ID, so they vary with the input.
func fuzzAddrs(tx TxID) []netip.AddrPort {
	var v6 [16]byte
	copy(v6[:], tx[:])
	copy(v6[12:], tx[:4])
	port := uint16(tx[4])<<8 | uint16(tx[5])
	return []netip.AddrPort{
		netip.AddrPortFrom(netip.AddrFrom4([4]byte(tx[:4])), port),
		netip.AddrPortFrom(netip.AddrFrom16(v6), port),
	}
}
