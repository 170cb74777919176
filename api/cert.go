package api

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// SelfSigned wraps a key in a long-lived self-signed certificate. Nobody
// checks its names or dates: both sides of wire's control channel
// authenticate each other by the pin of the public key alone.
func SelfSigned(key crypto.Signer, name string) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ErrPinMismatch says the server presented a key other than the pinned one.
var ErrPinMismatch = errors.New("server's TLS key does not match the pin in the join key " +
	"(a man in the middle, or the server's state dir was replaced)")

// PinnedTLS returns a client TLS config that accepts only a server whose
// key has the given pin, and presents cert (if not nil) as the client's
// identity.
func PinnedTLS(pin Pin, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The pin replaces chain and name verification; VerifyConnection
		// runs on every handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrPinMismatch
			}
			got := PinOf(cs.PeerCertificates[0])
			if subtle.ConstantTimeCompare(got[:], pin[:]) != 1 {
				return ErrPinMismatch
			}
			return nil
		},
		// Sessions resume (the servers' tickets survive restarts and are
		// good at every replica): a resumed handshake costs the server a
		// fraction of a full one, which counts when every node reconnects
		// at once.
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}
