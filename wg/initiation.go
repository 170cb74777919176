package wg

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
)

// Who is knocking. wireguard-go drops a handshake initiation from a key it
// has no peer for, so an engine that holds some peers back until they have
// traffic (see lazy.go) must tell whose initiation it is before
// wireguard-go sees it. The initiator's static key travels encrypted in
// the message; the responder's first steps of the Noise IK handshake
// (WireGuard whitepaper, section 5.4.2) recover it, and nothing more is
// done: the session is still wireguard-go's to make.

// The protocol's names, hashed into every handshake.
const (
	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	wgIdentifier      = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1         = "mac1----"
)

// The handshake initiation: type 1 and three zero bytes, the sender's
// index, its ephemeral key, its encrypted static key, the encrypted
// timestamp, mac1 (over everything before it) and mac2.
const (
	initiationSize = 148
	offEphemeral   = 8
	offStatic      = offEphemeral + 32
	offMAC1        = offStatic + 32 + chacha20poly1305.Overhead + 12 + chacha20poly1305.Overhead
)

// isInitiation says whether p looks like a handshake initiation.
func isInitiation(p []byte) bool {
	return len(p) == initiationSize && binary.LittleEndian.Uint32(p) == 1
}

// responder is what telling initiators apart needs of this device's key,
// worked out once.
type responder struct {
	private Key
	chain   [blake2s.Size]byte // the initial chaining key
	hash    [blake2s.Size]byte // the initial hash, after the responder's public key
	mac1    [blake2s.Size]byte // the key of mac1
}

func newResponder(private Key) *responder {
	pub := private.PublicKey()
	r := &responder{private: private, chain: blake2s.Sum256([]byte(noiseConstruction))}
	r.hash = hashOf(r.chain[:], []byte(wgIdentifier))
	r.hash = hashOf(r.hash[:], pub[:])
	r.mac1 = mac1Key(pub)
	return r
}

// initiator is the static public key of whoever sent the initiation msg to
// this device, or false if msg is not one (a wrong mac1: not meant for
// this key; or a static key that does not decrypt).
func (r *responder) initiator(msg []byte) (Key, bool) {
	if !isInitiation(msg) {
		return Key{}, false
	}
	if !hasMAC1(msg, offMAC1, &r.mac1) {
		return Key{}, false
	}
	ephemeral := msg[offEphemeral:offStatic]
	chain := kdf1(r.chain[:], ephemeral)
	h := hashOf(r.hash[:], ephemeral)
	shared, err := curve25519.X25519(r.private[:], ephemeral)
	if err != nil { // a low-order point
		return Key{}, false
	}
	_, key := kdf2(chain[:], shared)
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	var static Key
	if _, err := aead.Open(static[:0], nonce[:], msg[offStatic:offStatic+32+chacha20poly1305.Overhead], h[:]); err != nil {
		return Key{}, false
	}
	return static, true
}

// mac1Key is the key of the mac1 of the handshake messages sent to the
// holder of pub: HASH(LABEL_MAC1 || pub).
func mac1Key(pub Key) [blake2s.Size]byte { return hashOf([]byte(labelMAC1), pub[:]) }

// hasMAC1 says whether the handshake message msg, whose mac1 is at off,
// carries one made with key: whoever sent it knows the public key of
// key's holder, as a peer does and a stranger does not.
func hasMAC1(msg []byte, off int, key *[blake2s.Size]byte) bool {
	mac, _ := blake2s.New128(key[:])
	mac.Write(msg[:off])
	var sum [blake2s.Size128]byte
	return subtle.ConstantTimeCompare(mac.Sum(sum[:0]), msg[off:off+len(sum)]) == 1
}

// hashOf is HASH(a || b).
func hashOf(a, b []byte) [blake2s.Size]byte {
	h, _ := blake2s.New256(nil)
	h.Write(a)
	h.Write(b)
	var out [blake2s.Size]byte
	h.Sum(out[:0])
	return out
}

func newBlake2s() hash.Hash {
	h, _ := blake2s.New256(nil)
	return h
}

// hmacOf is HMAC-BLAKE2s(key, parts...).
func hmacOf(key []byte, parts ...[]byte) [blake2s.Size]byte {
	m := hmac.New(newBlake2s, key)
	for _, p := range parts {
		m.Write(p)
	}
	var out [blake2s.Size]byte
	m.Sum(out[:0])
	return out
}

// kdf1 and kdf2 are the whitepaper's KDF with one and two outputs.
func kdf1(key, input []byte) [blake2s.Size]byte {
	prk := hmacOf(key, input)
	return hmacOf(prk[:], []byte{1})
}

func kdf2(key, input []byte) (t1, t2 [blake2s.Size]byte) {
	prk := hmacOf(key, input)
	t1 = hmacOf(prk[:], []byte{1})
	t2 = hmacOf(prk[:], t1[:], []byte{2})
	return t1, t2
}
