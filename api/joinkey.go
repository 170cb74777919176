package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// A join key admits one node (or, if reusable, many) to the mesh. It has
// four parts, separated by dashes:
//
//	wire1-<id>-<secret>-<pin>
//
// The id names the key in the server's store, the secret proves the holder
// may enrol (the server keeps only its SHA-256), and the pin is the SHA-256
// of the server's TLS public key, so the node knows it talks to the real
// server before it sends the secret (as `kubeadm join` pins its CA).
type JoinKey struct {
	ID     string
	Secret string
	Pin    Pin
}

const joinKeyPrefix = "wire1"

// b32 is lowercase RFC 4648 base32 without padding: case-insensitive,
// no characters that need quoting in a shell, and never a dash.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrBadJoinKey says a string is not a join key at all.
var ErrBadJoinKey = errors.New("malformed join key")

// NewJoinKey makes a key with a fresh id and secret for the server whose
// certificate has the given pin.
func NewJoinKey(pin Pin) JoinKey {
	return JoinKey{ID: randomB32(5), Secret: randomB32(20), Pin: pin}
}

func randomB32(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return strings.ToLower(b32.EncodeToString(b))
}

// String formats the key as users paste it.
func (k JoinKey) String() string {
	return strings.Join([]string{joinKeyPrefix, k.ID, k.Secret, k.Pin.String()}, "-")
}

// ParseJoinKey parses the output of JoinKey.String.
func ParseJoinKey(s string) (JoinKey, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "-")
	if len(parts) != 4 || parts[0] != joinKeyPrefix {
		return JoinKey{}, fmt.Errorf("%w: want wire1-<id>-<secret>-<pin>, as printed by `wire server key create`", ErrBadJoinKey)
	}
	pin, err := ParsePin(parts[3])
	if err != nil {
		return JoinKey{}, fmt.Errorf("%w: %v", ErrBadJoinKey, err)
	}
	k := JoinKey{ID: parts[1], Secret: parts[2], Pin: pin}
	if !isB32(k.ID, 8) || !isB32(k.Secret, 32) {
		return JoinKey{}, fmt.Errorf("%w: id or secret has the wrong length or characters", ErrBadJoinKey)
	}
	return k, nil
}

func isB32(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := b32.DecodeString(strings.ToUpper(s))
	return err == nil
}

// SecretHash is what the server stores in place of the secret.
func SecretHash(secret string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(secret)))
	return h[:]
}

// SecretMatches compares a secret with a stored hash in constant time.
func SecretMatches(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(SecretHash(secret), hash) == 1
}
