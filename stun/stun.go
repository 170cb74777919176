// Package stun implements the STUN Binding method (RFC 8489/5389): the codec,
// a server that tells clients their public address, and a client.
//
// Only what address discovery needs is here: Binding requests and success
// responses, XOR-MAPPED-ADDRESS (with MAPPED-ADDRESS accepted from older
// servers), SOFTWARE and FINGERPRINT. There is no authentication.
package stun

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strings"
)

// Sentinel errors, for callers that branch on why a datagram was refused.
// Returned errors wrap them with detail.
var (
	// ErrNotSTUN means the datagram is not a STUN message at all (see Is).
	ErrNotSTUN = errors.New("stun: not a STUN message")
	// ErrMalformed means the datagram has a STUN header but a broken body:
	// a truncated attribute, a bad FINGERPRINT, a missing address.
	ErrMalformed = errors.New("stun: malformed message")
	// ErrNotBinding means a well-formed STUN message of another method or
	// class than the one asked for.
	ErrNotBinding = errors.New("stun: not the expected Binding message")
)

const (
	headerLen      = 20
	magicCookie    = 0x2112A442
	fingerprintXOR = 0x5354554e
	fingerprintLen = 8 // attribute header and CRC

	typeBindingRequest = 0x0001
	typeBindingSuccess = 0x0101

	attrMappedAddress    = 0x0001
	attrXorMappedAddress = 0x0020
	attrSoftware         = 0x8022
	attrFingerprint      = 0x8028

	familyIPv4 = 0x01
	familyIPv6 = 0x02

	// software names us in the SOFTWARE attribute of requests.
	software = "wire"
	// requestLen is the size of Request's messages. It is larger than the
	// largest response Response makes (52 bytes: IPv6 XOR-MAPPED-ADDRESS and
	// FINGERPRINT), so that even a server that never replies with more than
	// it got (as wire's once did, and some others do) can answer us in full.
	requestLen = 64
)

// softwareValue pads "wire" with spaces up to requestLen. Padding in SOFTWARE,
// a comprehension-optional attribute, rather than RFC 5780 PADDING, which is
// comprehension-required, keeps third-party servers from answering 420
// Unknown Attribute.
var softwareValue = software + strings.Repeat(" ", requestLen-headerLen-4-fingerprintLen-len(software))

// TxID is a STUN transaction ID.
type TxID [12]byte

// NewTxID returns a random transaction ID.
func NewTxID() TxID {
	var tx TxID
	rand.Read(tx[:]) // never fails; crashes the program if it cannot
	return tx
}

// Is reports whether b looks like a STUN message: a 20-byte header whose top
// two bits are zero, with the magic cookie, and a length field that matches
// the datagram and is a multiple of 4. It is cheap enough to demultiplex a
// socket shared with WireGuard, whose messages never pass it.
func Is(b []byte) bool {
	if len(b) < headerLen || b[0]&0xc0 != 0 {
		return false
	}
	if binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && n == len(b)-headerLen
}

// Request returns a Binding request with transaction ID tx, carrying
// SOFTWARE and FINGERPRINT. It is 64 bytes long, so that servers which never
// answer with more bytes than they received can fit any answer.
func Request(tx TxID) []byte {
	b := appendHeader(make([]byte, 0, requestLen), typeBindingRequest, tx)
	b = appendAttr(b, attrSoftware, []byte(softwareValue))
	return appendFingerprint(b)
}

// ParseBindingRequest parses a Binding request and reports its transaction
// ID and whether it carried a (valid) FINGERPRINT, which the response should
// then carry too.
//
// Attributes other than FINGERPRINT are skipped, including unknown
// comprehension-required ones: RFC 8489 would answer those with a 420 error,
// but nothing a client can add changes what a Binding response says, and
// ICE agents send PRIORITY, USERNAME and MESSAGE-INTEGRITY that this server
// neither needs nor checks.
func ParseBindingRequest(b []byte) (TxID, bool, error) {
	m, err := parse(b)
	if err != nil {
		return TxID{}, false, err
	}
	if m.typ != typeBindingRequest {
		return TxID{}, false, fmt.Errorf("%w: type %#04x, want Binding request", ErrNotBinding, m.typ)
	}
	return m.tx, m.fingerprint, nil
}

// MaxResponseLen is the size of the largest response Response makes: an
// IPv6 XOR-MAPPED-ADDRESS and FINGERPRINT.
const MaxResponseLen = 52

// Response returns a Binding success response for transaction tx telling the
// client its address is addr, in an XOR-MAPPED-ADDRESS; with fingerprint it
// also carries FINGERPRINT. IPv4-mapped IPv6 addresses are sent as IPv4. It
// is 32 bytes for IPv4 and 44 for IPv6, plus 8 with FINGERPRINT.
func Response(tx TxID, addr netip.AddrPort, fingerprint bool) []byte {
	b := appendHeader(make([]byte, 0, MaxResponseLen), typeBindingSuccess, tx)
	b = appendAttr(b, attrXorMappedAddress, xorAddress(tx, addr))
	if fingerprint {
		b = appendFingerprint(b)
	}
	return b
}

// ParseResponse parses a Binding success response and returns its
// transaction ID and the mapped address it reports, from XOR-MAPPED-ADDRESS
// or, failing that, MAPPED-ADDRESS. The address is returned unmapped: IPv4 is
// never reported as IPv4-in-IPv6.
func ParseResponse(b []byte) (TxID, netip.AddrPort, error) {
	m, err := parse(b)
	if err != nil {
		return TxID{}, netip.AddrPort{}, err
	}
	if m.typ != typeBindingSuccess {
		return TxID{}, netip.AddrPort{}, fmt.Errorf("%w: type %#04x, want Binding success response", ErrNotBinding, m.typ)
	}
	var addr netip.AddrPort
	switch {
	case m.hasXorMapped:
		addr, err = decodeAddress(m.xorMapped, &m.tx)
	case m.hasMapped:
		addr, err = decodeAddress(m.mapped, nil)
	default:
		err = fmt.Errorf("%w: no mapped address", ErrMalformed)
	}
	if err != nil {
		return TxID{}, netip.AddrPort{}, err
	}
	return m.tx, addr, nil
}

// message is what parse keeps of a STUN message.
type message struct {
	typ          uint16
	tx           TxID
	xorMapped    []byte // first XOR-MAPPED-ADDRESS value
	mapped       []byte // first MAPPED-ADDRESS value
	hasXorMapped bool
	hasMapped    bool
	fingerprint  bool
}

// parse checks the header, walks the attributes and verifies FINGERPRINT.
// The slices in the result alias b.
func parse(b []byte) (message, error) {
	if !Is(b) {
		return message{}, ErrNotSTUN
	}
	m := message{typ: binary.BigEndian.Uint16(b[0:2])}
	copy(m.tx[:], b[8:headerLen])
	for off := headerLen; off < len(b); {
		if m.fingerprint {
			return message{}, fmt.Errorf("%w: attribute after FINGERPRINT", ErrMalformed)
		}
		next, err := m.attr(b, off)
		if err != nil {
			return message{}, err
		}
		off = next
	}
	return m, nil
}

// attr reads the attribute at b[off:] into m and returns the offset of the
// next one.
func (m *message) attr(b []byte, off int) (int, error) {
	if len(b)-off < 4 {
		return 0, fmt.Errorf("%w: truncated attribute header at %d", ErrMalformed, off)
	}
	typ := binary.BigEndian.Uint16(b[off:])
	n := int(binary.BigEndian.Uint16(b[off+2:]))
	start := off + 4
	next := start + (n+3)&^3
	if next > len(b) {
		return 0, fmt.Errorf("%w: attribute %#04x overruns the message", ErrMalformed, typ)
	}
	val := b[start : start+n]
	switch typ {
	case attrFingerprint:
		if err := checkFingerprint(b[:off], val); err != nil {
			return 0, err
		}
		m.fingerprint = true
	case attrXorMappedAddress:
		if !m.hasXorMapped {
			m.xorMapped, m.hasXorMapped = val, true
		}
	case attrMappedAddress:
		if !m.hasMapped {
			m.mapped, m.hasMapped = val, true
		}
	}
	return next, nil
}

// checkFingerprint verifies a FINGERPRINT value against the message before
// it. The header length already counts FINGERPRINT, since parse requires it
// to be the last attribute.
func checkFingerprint(before, val []byte) error {
	if len(val) != 4 {
		return fmt.Errorf("%w: FINGERPRINT is %d bytes, want 4", ErrMalformed, len(val))
	}
	if binary.BigEndian.Uint32(val) != fingerprint(before) {
		return fmt.Errorf("%w: FINGERPRINT mismatch", ErrMalformed)
	}
	return nil
}

func fingerprint(b []byte) uint32 {
	return crc32.ChecksumIEEE(b) ^ fingerprintXOR
}

func appendHeader(b []byte, typ uint16, tx TxID) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, 0) // length, kept up to date by appendAttr
	b = binary.BigEndian.AppendUint32(b, magicCookie)
	return append(b, tx[:]...)
}

// appendAttr appends a padded attribute to the message b and updates the
// length in its header.
func appendAttr(b []byte, typ uint16, val []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-headerLen))
	return b
}

// appendFingerprint appends FINGERPRINT, computed over the message with its
// length already counting the FINGERPRINT attribute.
func appendFingerprint(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)+fingerprintLen-headerLen))
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], fingerprint(b))
	return appendAttr(b, attrFingerprint, crc[:])
}

// xorKey is what XOR-MAPPED-ADDRESS XORs addresses with: the magic cookie
// and, for IPv6, the transaction ID.
func xorKey(tx *TxID) [16]byte {
	var k [16]byte
	binary.BigEndian.PutUint32(k[:4], magicCookie)
	copy(k[4:], tx[:])
	return k
}

// xorAddress encodes an XOR-MAPPED-ADDRESS value. An invalid address is
// encoded as 0.0.0.0.
func xorAddress(tx TxID, ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap()
	var raw []byte
	family := byte(familyIPv4)
	switch {
	case ip.Is6():
		a := ip.As16()
		raw, family = a[:], familyIPv6
	case ip.Is4():
		a := ip.As4()
		raw = a[:]
	default:
		raw = make([]byte, 4)
	}
	key := xorKey(&tx)
	v := []byte{0, family}
	v = binary.BigEndian.AppendUint16(v, ap.Port()^magicCookie>>16)
	for i, c := range raw {
		v = append(v, c^key[i])
	}
	return v
}

// decodeAddress decodes a MAPPED-ADDRESS value, or an XOR-MAPPED-ADDRESS one
// if tx is not nil.
func decodeAddress(v []byte, tx *TxID) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, fmt.Errorf("%w: address attribute is %d bytes", ErrMalformed, len(v))
	}
	family, port, raw := v[1], binary.BigEndian.Uint16(v[2:4]), v[4:]
	if (family != familyIPv4 || len(raw) != 4) && (family != familyIPv6 || len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%w: address family %d with %d bytes", ErrMalformed, family, len(raw))
	}
	var ip [16]byte
	copy(ip[:], raw)
	if tx != nil {
		key := xorKey(tx)
		for i := range raw {
			ip[i] ^= key[i]
		}
		port ^= magicCookie >> 16
	}
	addr := netip.AddrFrom16(ip)
	if family == familyIPv4 {
		addr = netip.AddrFrom4([4]byte(ip[:4]))
	}
	return netip.AddrPortFrom(addr.Unmap(), port), nil
}
