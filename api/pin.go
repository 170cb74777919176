package api

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// A Pin is the SHA-256 of a certificate's SubjectPublicKeyInfo. The server's
// pin travels in join keys; a node's pin is its identity on the server.
type Pin [sha256.Size]byte

// PinOf returns the pin of a certificate.
func PinOf(cert *x509.Certificate) Pin {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// String is the pin in lowercase base32, as it appears in join keys.
func (p Pin) String() string {
	return strings.ToLower(b32.EncodeToString(p[:]))
}

// Curl is the pin in the form curl's --pinnedpubkey takes.
func (p Pin) Curl() string {
	return "sha256//" + base64.StdEncoding.EncodeToString(p[:])
}

// ParsePin parses the output of Pin.String.
func ParsePin(s string) (Pin, error) {
	var p Pin
	b, err := b32.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != len(p) {
		return p, fmt.Errorf("pin %.12q… is not a base32 SHA-256", s)
	}
	copy(p[:], b)
	return p, nil
}

// KeyPin is the pin of a public key: what PinOf returns for any
// certificate of that key.
func KeyPin(pub crypto.PublicKey) (Pin, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Pin{}, err
	}
	return sha256.Sum256(der), nil
}
