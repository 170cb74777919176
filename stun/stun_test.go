package stun

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// RFC 5769 test vectors, sections 2.1 to 2.3, as the RFC prints them. Their
// FINGERPRINT and MESSAGE-INTEGRITY are checked independently of the package
// in TestRFC5769Vectors, so a typo here fails loudly.
const (
	rfc5769Password = "VOkJxbRl1RmTxUk/WvJxBt"

	rfc5769Request = `
		00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
		00 24 00 04 6e 00 01 ff
		80 29 00 08 93 2f f9 b1 51 26 3b 36
		00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
		00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
		80 28 00 04 e5 7a 3b cf`

	rfc5769IPv4Response = `
		01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
		00 20 00 08 00 01 a1 47 e1 12 a6 43
		00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
		80 28 00 04 c0 7d 4c 96`

	rfc5769IPv6Response = `
		01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
		00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
		00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
		80 28 00 04 c8 fb 0b 4c`
)

var rfc5769TxID = TxID{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

// unhex decodes hex written with spaces and line breaks.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// checkFingerprintRFC recomputes the FINGERPRINT of a message that ends with
// one (RFC 8489 section 14.7), without the package's code.
func checkFingerprintRFC(t *testing.T, msg []byte) {
	t.Helper()
	n := len(msg) - 8
	if got := binary.BigEndian.Uint16(msg[n:]); got != 0x8028 {
		t.Fatalf("last attribute is %#04x, want FINGERPRINT", got)
	}
	want := crc32.ChecksumIEEE(msg[:n]) ^ 0x5354554e
	if got := binary.BigEndian.Uint32(msg[n+4:]); got != want {
		t.Errorf("FINGERPRINT = %#08x, want %#08x", got, want)
	}
}

// checkIntegrity verifies MESSAGE-INTEGRITY (RFC 8489 section 14.5) with a
// short-term password: HMAC-SHA1 over the message before the attribute,
// with the header length counting up to the end of MESSAGE-INTEGRITY.
func checkIntegrity(t *testing.T, msg []byte, password string) {
	t.Helper()
	off := findAttr(msg, 0x0008)
	if off < 0 {
		t.Fatal("no MESSAGE-INTEGRITY")
	}
	signed := bytes.Clone(msg[:off])
	binary.BigEndian.PutUint16(signed[2:4], uint16(off+24-20))
	mac := hmac.New(sha1.New, []byte(password))
	mac.Write(signed)
	if got, want := msg[off+4:off+24], mac.Sum(nil); !hmac.Equal(got, want) {
		t.Errorf("MESSAGE-INTEGRITY = %x, want %x", got, want)
	}
}

// findAttr returns the offset of the first attribute of type typ, or -1.
func findAttr(msg []byte, typ uint16) int {
	for off := 20; off+4 <= len(msg); {
		if binary.BigEndian.Uint16(msg[off:]) == typ {
			return off
		}
		off += 4 + (int(binary.BigEndian.Uint16(msg[off+2:]))+3)&^3
	}
	return -1
}

func TestRFC5769Vectors(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		request bool
		want    netip.AddrPort
	}{
		{"2.1 sample request", rfc5769Request, true, netip.AddrPort{}},
		{"2.2 IPv4 response", rfc5769IPv4Response, false, netip.MustParseAddrPort("192.0.2.1:32853")},
		{"2.3 IPv6 response", rfc5769IPv6Response, false, netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := unhex(t, tt.msg)
			checkFingerprintRFC(t, msg)
			checkIntegrity(t, msg, rfc5769Password)
			if !Is(msg) {
				t.Fatal("Is = false, want true")
			}
			if tt.request {
				checkRequestVector(t, msg)
			} else {
				checkResponseVector(t, msg, tt.want)
			}
		})
	}
}

func checkRequestVector(t *testing.T, msg []byte) {
	tx, fp, err := ParseBindingRequest(msg)
	if err != nil {
		t.Fatalf("ParseBindingRequest: %v", err)
	}
	if tx != rfc5769TxID || !fp {
		t.Errorf("ParseBindingRequest = %x, %v; want %x, true", tx, fp, rfc5769TxID)
	}
}

func checkResponseVector(t *testing.T, msg []byte, want netip.AddrPort) {
	tx, addr, err := ParseResponse(msg)
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if tx != rfc5769TxID || addr != want {
		t.Errorf("ParseResponse = %x, %v; want %x, %v", tx, addr, rfc5769TxID, want)
	}
}

// TestRFC5769Corrupted flips each bit after the header of each vector: the
// result must be rejected as malformed, or, when the flip hides FINGERPRINT
// (its type changed, or an earlier length now spans it), be accepted only as
// a message without FINGERPRINT.
func TestRFC5769Corrupted(t *testing.T) {
	for _, vector := range []string{rfc5769Request, rfc5769IPv4Response, rfc5769IPv6Response} {
		msg := unhex(t, vector)
		for i := 20; i < len(msg); i++ {
			for bit := range 8 {
				m, err := parse(with(msg, i, msg[i]^1<<bit))
				if err == nil && m.fingerprint || err != nil && !errors.Is(err, ErrMalformed) {
					t.Errorf("%x with bit %d of byte %d flipped: fingerprint %v, error %v; want ErrMalformed or no fingerprint", msg[:2], bit, i, m.fingerprint, err)
				}
			}
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		addr        netip.AddrPort
		fingerprint bool
		wantLen     int
		want        netip.AddrPort
	}{
		{"IPv4", netip.MustParseAddrPort("203.0.113.10:54321"), false, 32, netip.MustParseAddrPort("203.0.113.10:54321")},
		{"IPv4 fingerprint", netip.MustParseAddrPort("203.0.113.10:54321"), true, 40, netip.MustParseAddrPort("203.0.113.10:54321")},
		{"IPv6", netip.MustParseAddrPort("[2001:db8::1]:3478"), false, 44, netip.MustParseAddrPort("[2001:db8::1]:3478")},
		{"IPv6 fingerprint", netip.MustParseAddrPort("[2001:db8::1]:3478"), true, 52, netip.MustParseAddrPort("[2001:db8::1]:3478")},
		{"4in6", netip.MustParseAddrPort("[::ffff:198.51.100.7]:1"), false, 32, netip.MustParseAddrPort("198.51.100.7:1")},
		{"4in6 fingerprint", netip.MustParseAddrPort("[::ffff:198.51.100.7]:65535"), true, 40, netip.MustParseAddrPort("198.51.100.7:65535")},
		{"invalid", netip.AddrPort{}, true, 40, netip.MustParseAddrPort("0.0.0.0:0")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := NewTxID()
			msg := Response(tx, tt.addr, tt.fingerprint)
			if len(msg) != tt.wantLen {
				t.Errorf("len(Response) = %d, want %d", len(msg), tt.wantLen)
			}
			if tt.fingerprint {
				checkFingerprintRFC(t, msg)
			}
			gotTx, got, err := ParseResponse(msg)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if gotTx != tx || got != tt.want {
				t.Errorf("ParseResponse = %x, %v; want %x, %v", gotTx, got, tx, tt.want)
			}
		})
	}
}

func TestRequestRoundTrip(t *testing.T) {
	tx := NewTxID()
	msg := Request(tx)
	if biggest := len(Response(tx, netip.MustParseAddrPort("[2001:db8::1]:1"), true)); len(msg) < biggest {
		t.Errorf("len(Request) = %d, smaller than the largest response (%d)", len(msg), biggest)
	}
	checkFingerprintRFC(t, msg)
	if off := findAttr(msg, 0x8022); off < 0 || !bytes.HasPrefix(msg[off+4:], []byte("wire")) {
		t.Errorf("Request has no SOFTWARE \"wire\": %x", msg)
	}
	gotTx, fp, err := ParseBindingRequest(msg)
	if err != nil {
		t.Fatalf("ParseBindingRequest: %v", err)
	}
	if gotTx != tx || !fp {
		t.Errorf("ParseBindingRequest = %x, %v; want %x, true", gotTx, fp, tx)
	}
}

func TestNewTxID(t *testing.T) {
	if a, b := NewTxID(), NewTxID(); a == b {
		t.Errorf("two NewTxID calls both gave %x", a)
	}
}

// build assembles a STUN message of type typ with the given attributes
// (type, value), padding each, and a FINGERPRINT if fp.
func build(typ uint16, tx TxID, fp bool, attrs ...any) []byte {
	b := appendHeader(nil, typ, tx)
	for i := 0; i+1 < len(attrs); i += 2 {
		b = appendAttr(b, attrs[i].(uint16), attrs[i+1].([]byte))
	}
	if fp {
		b = appendFingerprint(b)
	}
	return b
}

func TestParseBindingRequestErrors(t *testing.T) {
	tx := TxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	good := Request(tx)
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrNotSTUN},
		{"19 bytes", good[:19], ErrNotSTUN},
		{"truncated", good[:len(good)-4], ErrNotSTUN},
		{"top bits set", with(good, 0, 0x40), ErrNotSTUN},
		{"no magic cookie", with(good, 4, 0x22), ErrNotSTUN},
		{"length too long", with(good, 3, good[3]+4), ErrNotSTUN},
		{"length not multiple of 4", append(with(good, 3, good[3]+2), 0, 0), ErrNotSTUN},
		{"not STUN", []byte("hello, is this the seed server? hello, is this"), ErrNotSTUN},
		{"attribute overruns", with(build(0x0001, tx, false, uint16(0x8022), []byte("abcd")), 23, 8), ErrMalformed},
		{"bad fingerprint", with(good, len(good)-1, good[len(good)-1]^1), ErrMalformed},
		{"valid fingerprint not last", fingerprintNotLast(tx), ErrMalformed},
		{"fingerprint wrong size", build(0x0001, tx, false, uint16(0x8028), []byte{0, 0}), ErrMalformed},
		{"success response", Response(tx, netip.MustParseAddrPort("192.0.2.1:1"), true), ErrNotBinding},
		{"indication", build(0x0011, tx, true), ErrNotBinding},
		{"other method", build(0x0003, tx, true), ErrNotBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseBindingRequest(tt.msg)
			if !errors.Is(err, tt.want) {
				t.Errorf("ParseBindingRequest(%x) = %v, want %v", tt.msg, err, tt.want)
			}
			if got, want := Is(tt.msg), tt.want != ErrNotSTUN; got != want {
				t.Errorf("Is = %v, want %v", got, want)
			}
		})
	}
}

// fingerprintNotLast returns a request whose FINGERPRINT is right but is
// followed by SOFTWARE.
func fingerprintNotLast(tx TxID) []byte {
	b := appendHeader(nil, 0x0001, tx)
	binary.BigEndian.PutUint16(b[2:4], 16)
	b = binary.BigEndian.AppendUint32(b, 0x80280004)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[:20])^0x5354554e)
	b = binary.BigEndian.AppendUint32(b, 0x80220004)
	return append(b, "wire"...)
}

// with returns a copy of b with b[i] = v.
func with(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

func TestParseBindingRequestAccepts(t *testing.T) {
	tx := TxID{12, 11, 10}
	tests := []struct {
		name   string
		msg    []byte
		wantFP bool
	}{
		{"bare header", build(0x0001, tx, false), false},
		{"bare with fingerprint", build(0x0001, tx, true), true},
		{"unknown comprehension-required", build(0x0001, tx, true, uint16(0x7fff), []byte("?")), true},
		{"unknown comprehension-optional", build(0x0001, tx, false, uint16(0xc001), []byte{}), false},
		{"padding not zero", with(build(0x0001, tx, false, uint16(0x8022), []byte("a")), 25, 'z'), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fp, err := ParseBindingRequest(tt.msg)
			if err != nil {
				t.Fatalf("ParseBindingRequest(%x): %v", tt.msg, err)
			}
			if got != tx || fp != tt.wantFP {
				t.Errorf("ParseBindingRequest = %x, %v; want %x, %v", got, fp, tx, tt.wantFP)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tx := TxID{9, 9, 9}
	v4 := netip.MustParseAddrPort("192.0.2.1:32853")
	mapped4 := []byte{0, 1, 0x80, 0x55, 192, 0, 2, 1}
	mapped6 := append([]byte{0, 2, 0x0d, 0x96}, netip.MustParseAddr("2001:db8::9").AsSlice()...)
	mapped4in6 := append([]byte{0, 2, 0, 7}, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()...)
	xor4 := xorAddress(tx, v4)
	tests := []struct {
		name    string
		msg     []byte
		want    netip.AddrPort
		wantErr error
	}{
		{"XOR-MAPPED-ADDRESS", build(0x0101, tx, true, uint16(0x0020), xor4), v4, nil},
		{"MAPPED-ADDRESS fallback", build(0x0101, tx, false, uint16(0x0001), mapped4), v4, nil},
		{"MAPPED-ADDRESS IPv6", build(0x0101, tx, false, uint16(0x0001), mapped6), netip.MustParseAddrPort("[2001:db8::9]:3478"), nil},
		{"MAPPED-ADDRESS 4in6 unmapped", build(0x0101, tx, false, uint16(0x0001), mapped4in6), netip.MustParseAddrPort("10.0.0.1:7"), nil},
		{"XOR preferred", build(0x0101, tx, false, uint16(0x0001), mapped6, uint16(0x0020), xor4), v4, nil},
		{"first XOR wins", build(0x0101, tx, false, uint16(0x0020), xor4, uint16(0x0020), mapped6), v4, nil},
		{"no address", build(0x0101, tx, true, uint16(0x8022), []byte("x")), netip.AddrPort{}, ErrMalformed},
		{"short address", build(0x0101, tx, true, uint16(0x0020), []byte{0, 1, 0}), netip.AddrPort{}, ErrMalformed},
		{"IPv4 family, 16 bytes", build(0x0101, tx, true, uint16(0x0001), with(mapped6, 1, 1)), netip.AddrPort{}, ErrMalformed},
		{"IPv6 family, 4 bytes", build(0x0101, tx, true, uint16(0x0020), with(xor4, 1, 2)), netip.AddrPort{}, ErrMalformed},
		{"unknown family", build(0x0101, tx, true, uint16(0x0020), with(xor4, 1, 3)), netip.AddrPort{}, ErrMalformed},
		{"error response", build(0x0111, tx, true, uint16(0x0020), xor4), netip.AddrPort{}, ErrNotBinding},
		{"request", Request(tx), netip.AddrPort{}, ErrNotBinding},
		{"not STUN", []byte{0x01, 0, 0, 0, 1, 2, 3, 4}, netip.AddrPort{}, ErrNotSTUN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotTx, got, err := ParseResponse(tt.msg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseResponse(%x) error = %v, want %v", tt.msg, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if gotTx != tx || got != tt.want {
				t.Errorf("ParseResponse = %x, %v; want %x, %v", gotTx, got, tx, tt.want)
			}
		})
	}
}

func TestIs(t *testing.T) {
	wgHandshake := make([]byte, 148)
	wgHandshake[0] = 1
	wgData := make([]byte, 32)
	wgData[0] = 4
	copy(wgData[4:], []byte{0x21, 0x12, 0xa4, 0x42}) // receiver index that looks like the cookie
	tests := []struct {
		name string
		msg  []byte
		want bool
	}{
		{"request", Request(NewTxID()), true},
		{"response", Response(NewTxID(), netip.MustParseAddrPort("192.0.2.1:1"), false), true},
		{"bare header", build(0x0001, TxID{}, false), true},
		{"RFC 5769 request", unhex(t, rfc5769Request), true},
		{"WireGuard handshake initiation", wgHandshake, false},
		{"WireGuard data with cookie-like index", wgData, false},
		{"legacy probe", []byte(`{"hello":"wire"}`), false},
		{"RFC 3489 request without cookie", make([]byte, 20), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Is(tt.msg); got != tt.want {
				t.Errorf("Is(%x) = %v, want %v", tt.msg, got, tt.want)
			}
		})
	}
}

// TestRequestBytes pins the exact request bytes, so a change to the wire
// format is deliberate.
func TestRequestBytes(t *testing.T) {
	tx := TxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	want := unhex(t, `
		00 01 00 2c 21 12 a4 42 01 02 03 04 05 06 07 08 09 0a 0b 0c
		80 22 00 20 77 69 72 65 20 20 20 20 20 20 20 20 20 20 20 20
		20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20
		80 28 00 04`)
	got := Request(tx)
	if diff := cmp.Diff(want, got[:len(got)-4]); diff != "" {
		t.Errorf("Request mismatch (-want +got):\n%s", diff)
	}
}
