// Package relay carries WireGuard packets between nodes that cannot reach
// each other directly: the wire protocol, the UDP server the coordination
// server runs, and the node's client Conn.
//
// The relay only ever sees WireGuard ciphertext. Nodes are addressed by their
// VPN IPv4 address. A node proves its address with a HELLO authenticated by a
// token it got from the coordination server; the relay then binds the address
// to the HELLO's source, and forwards DATA addressed to that VPN IP only
// there. Every datagram starts with the header 'w', 'r', Version, type:
//
//	HELLO       header | vpnIP(4) | unixMillis(8) | nonce(8) | mac(16)   node → relay
//	HELLO-ACK   header | nonce(8)                                          relay → node
//	HELLO-STALE header | nonce(8) | unixMillis(8) | mac(16)                relay → node
//	DATA        header | vpnIP(4) | payload                                both ways
//
// The mac is HMAC-SHA256(token, header|vpnIP|unixMillis|nonce) cut to 16
// bytes. The relay answers an authentic HELLO whose timestamp is outside
// Window of its clock (the node's clock is off) with HELLO-STALE, which
// carries the relay's time under the same token (its mac covers
// header|nonce|unixMillis): the node learns how far off it is, and corrects
// its timestamps by that. HELLO-STALE is shorter than the HELLO it answers. In DATA from a node, vpnIP is the destination; the relay rewrites it
// to the source's VPN IP and sends the datagram on unchanged in size, so it
// can never amplify.
package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Version is the protocol version this package speaks.
const Version = 1

// Message types, the fourth byte of the header.
const (
	typeHello    = 1
	typeHelloAck = 2
	typeData     = 3
	typeStale    = 4
)

const (
	headerLen = 4
	macLen    = 16
	// helloSignedLen is the part of a HELLO the mac covers.
	helloSignedLen = headerLen + 4 + 8 + 8
	helloLen       = helloSignedLen + macLen
	helloAckLen    = headerLen + 8
	staleSignedLen = headerLen + 8 + 8
	staleLen       = staleSignedLen + macLen
	// DataOverhead is how many bytes DATA adds to a WireGuard packet.
	DataOverhead = headerLen + 4
	// TokenLen is the length of the tokens the coordination server issues.
	TokenLen = 32
)

// Window is how far a HELLO's timestamp may be from the relay's clock.
const Window = 60 * time.Second

// Sentinel errors, for callers that branch on why a datagram was refused.
// Returned errors wrap them with detail.
var (
	// ErrNotRelay means the datagram is not a relay message at all (see Is).
	ErrNotRelay = errors.New("relay: not a relay message")
	// ErrVersion means a relay message of a version this package does not
	// speak.
	ErrVersion = errors.New("relay: unsupported protocol version")
	// ErrMalformed means a relay message of the wrong type or length.
	ErrMalformed = errors.New("relay: malformed message")
	// ErrBadMAC means a HELLO whose mac does not match the node's token.
	ErrBadMAC = errors.New("relay: HELLO authentication failed")
	// ErrStale means a HELLO whose timestamp is outside Window.
	ErrStale = errors.New("relay: HELLO timestamp outside the allowed window")
)

// Is reports whether b looks like a relay message, cheaply, so that a socket
// shared with WireGuard and STUN can be demultiplexed. No WireGuard or STUN
// packet starts with 'w', 'r': WireGuard's first byte is its message type,
// 1 to 4, followed by three zero bytes; a STUN message's first two bits are
// zero (RFC 8489 section 5), while 'w' is 0x77, 0b01110111. Is does not check
// the version, so that a newer version is recognised and then refused by the
// parsers with ErrVersion rather than mistaken for WireGuard.
func Is(b []byte) bool {
	return len(b) >= headerLen && b[0] == 'w' && b[1] == 'r'
}

// header checks b's header and returns its type.
func header(b []byte) (byte, error) {
	if !Is(b) {
		return 0, ErrNotRelay
	}
	if b[2] != Version {
		return 0, fmt.Errorf("%w %d", ErrVersion, b[2])
	}
	return b[3], nil
}

// expect checks that b is a message of type typ and length want (at least
// want if orLonger).
func expect(b []byte, typ byte, want int, orLonger bool) error {
	got, err := header(b)
	if err != nil {
		return err
	}
	if got != typ {
		return fmt.Errorf("%w: type %d, want %d", ErrMalformed, got, typ)
	}
	if len(b) < want || (len(b) > want && !orLonger) {
		return fmt.Errorf("%w: %d bytes of type %d", ErrMalformed, len(b), typ)
	}
	return nil
}

func appendHeader(dst []byte, typ byte) []byte {
	return append(dst, 'w', 'r', Version, typ)
}

// appendAddr appends the 4 bytes of an IPv4 address. It panics if a is not
// IPv4 (or IPv4-mapped IPv6).
func appendAddr(dst []byte, a netip.Addr) []byte {
	b := a.Unmap().As4()
	return append(dst, b[:]...)
}

// Hello is a parsed HELLO. Parsing checks only its form; Verify checks that
// it comes from the holder of the node's token.
type Hello struct {
	VPNIP netip.Addr
	Time  time.Time // millisecond precision
	Nonce uint64
	mac   [macLen]byte
}

// AppendHello appends to dst a HELLO for vpnIP at time now, authenticated
// with token. Each HELLO needs a fresh nonce: the relay refuses a nonce it
// has seen from vpnIP within Window. It panics if vpnIP is not IPv4.
func AppendHello(dst []byte, vpnIP netip.Addr, token []byte, now time.Time, nonce uint64) []byte {
	start := len(dst)
	dst = appendHelloSigned(dst, vpnIP, now.UnixMilli(), nonce)
	mac := helloMAC(token, dst[start:])
	return append(dst, mac[:]...)
}

// appendHelloSigned appends the part of a HELLO that the mac covers.
func appendHelloSigned(dst []byte, vpnIP netip.Addr, millis int64, nonce uint64) []byte {
	dst = appendHeader(dst, typeHello)
	dst = appendAddr(dst, vpnIP)
	dst = binary.BigEndian.AppendUint64(dst, uint64(millis))
	return binary.BigEndian.AppendUint64(dst, nonce)
}

func helloMAC(token, signed []byte) [macLen]byte {
	h := hmac.New(sha256.New, token)
	h.Write(signed)
	var mac [macLen]byte
	copy(mac[:], h.Sum(nil))
	return mac
}

// ParseHello parses a HELLO without authenticating it.
func ParseHello(b []byte) (Hello, error) {
	if err := expect(b, typeHello, helloLen, false); err != nil {
		return Hello{}, err
	}
	h := Hello{
		VPNIP: netip.AddrFrom4([4]byte(b[4:8])),
		Time:  time.UnixMilli(int64(binary.BigEndian.Uint64(b[8:16]))),
		Nonce: binary.BigEndian.Uint64(b[16:24]),
	}
	copy(h.mac[:], b[helloSignedLen:])
	return h, nil
}

// Verify checks, in constant time, that h was made with token, and that its
// timestamp is within Window of now. It returns ErrBadMAC or ErrStale.
func (h Hello) Verify(token []byte, now time.Time) error {
	signed := appendHelloSigned(make([]byte, 0, helloSignedLen), h.VPNIP, h.Time.UnixMilli(), h.Nonce)
	want := helloMAC(token, signed)
	if !hmac.Equal(want[:], h.mac[:]) {
		return fmt.Errorf("%w for %v", ErrBadMAC, h.VPNIP)
	}
	if d := now.Sub(h.Time); d > Window || d < -Window {
		return fmt.Errorf("%w: %v is %v away from %v", ErrStale, h.VPNIP, d.Round(time.Millisecond), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// AppendHelloAck appends to dst the answer to the HELLO with nonce.
func AppendHelloAck(dst []byte, nonce uint64) []byte {
	return binary.BigEndian.AppendUint64(appendHeader(dst, typeHelloAck), nonce)
}

// ParseHelloAck returns the nonce a HELLO-ACK answers.
func ParseHelloAck(b []byte) (uint64, error) {
	if err := expect(b, typeHelloAck, helloAckLen, false); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[headerLen:]), nil
}

// AppendHelloStale appends to dst the answer to an authentic HELLO with
// nonce whose timestamp is outside Window of the relay's clock, now,
// authenticated with the node's token.
func AppendHelloStale(dst []byte, token []byte, nonce uint64, now time.Time) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(appendHeader(dst, typeStale), nonce)
	dst = binary.BigEndian.AppendUint64(dst, uint64(now.UnixMilli()))
	mac := helloMAC(token, dst[start:])
	return append(dst, mac[:]...)
}

// ParseHelloStale checks that b is a HELLO-STALE made with token, and
// returns the nonce it answers and the relay's time.
func ParseHelloStale(b []byte, token []byte) (uint64, time.Time, error) {
	if err := expect(b, typeStale, staleLen, false); err != nil {
		return 0, time.Time{}, err
	}
	want := helloMAC(token, b[:staleSignedLen])
	if !hmac.Equal(want[:], b[staleSignedLen:]) {
		return 0, time.Time{}, fmt.Errorf("%w: HELLO-STALE", ErrBadMAC)
	}
	nonce := binary.BigEndian.Uint64(b[headerLen:])
	return nonce, time.UnixMilli(int64(binary.BigEndian.Uint64(b[headerLen+8:]))), nil
}

// AppendData appends to dst a DATA message carrying payload. From a node,
// peer is the destination's VPN IP; from the relay, the source's. It panics
// if peer is not IPv4.
func AppendData(dst []byte, peer netip.Addr, payload []byte) []byte {
	dst = appendAddr(appendHeader(dst, typeData), peer)
	return append(dst, payload...)
}

// ParseData returns the peer VPN IP and payload of a DATA message. The
// payload aliases b.
func ParseData(b []byte) (peer netip.Addr, payload []byte, err error) {
	if err := expect(b, typeData, DataOverhead, true); err != nil {
		return netip.Addr{}, nil, err
	}
	return netip.AddrFrom4([4]byte(b[4:8])), b[DataOverhead:], nil
}
