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
		checkNoAmplification(t, srv, b)
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

// checkNoAmplification checks that the server's answer to b is never larger
// than b.
func checkNoAmplification(t *testing.T, srv *Server, b []byte) {
	for _, src := range longestSources {
		if r := srv.reply(b, src); len(r) > len(b) {
			t.Errorf("%d-byte reply to %d bytes from %v: %x", len(r), len(b), src, b)
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
