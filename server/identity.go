package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wire-mesh/wire/api"
)

// Files of the server's identity in the state dir.
const (
	KeyFile   = "server.key"  // the TLS private key; its pin is in every join key
	TokenFile = "admin.token" // bearer token for /status and /peers as admin
)

// Identity is what the server proves itself with.
type Identity struct {
	Cert       tls.Certificate
	Pin        api.Pin
	AdminToken string
}

// LoadIdentity reads the server's key and admin token from dir, creating
// them on first use. The key never changes afterwards: join keys pin it.
func LoadIdentity(dir string) (Identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("state dir: %w", err)
	}
	key, err := loadOrCreate(filepath.Join(dir, KeyFile), newKeyPEM)
	if err != nil {
		return Identity{}, err
	}
	block, _ := pem.Decode(key)
	if block == nil {
		return Identity{}, fmt.Errorf("%s: not a PEM file", KeyFile)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", KeyFile, err)
	}
	signer, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return Identity{}, fmt.Errorf("%s: want an ECDSA key, found %T", KeyFile, priv)
	}
	cert, err := api.SelfSigned(signer, "wire-server")
	if err != nil {
		return Identity{}, err
	}
	token, err := loadOrCreate(filepath.Join(dir, TokenFile), newToken)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Cert: cert, Pin: api.PinOf(cert.Leaf), AdminToken: strings.TrimSpace(string(token))}, nil
}

func newKeyPEM() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newToken() ([]byte, error) {
	b := make([]byte, 24)
	rand.Read(b)
	return []byte(hex.EncodeToString(b) + "\n"), nil
}

// loadOrCreate reads path, or writes what create makes to it (mode 0600)
// atomically: readers never see a partial file.
func loadOrCreate(path string, create func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) == 0 {
			return nil, fmt.Errorf("%s is empty: restore it from a backup (join keys and nodes depend on it)", path)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b, err = create()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, b, 0o600); errors.Is(err, os.ErrExist) {
		return os.ReadFile(path) // another process created it first
	} else if err != nil {
		return nil, err
	}
	return b, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil {
		return err // another process won the race; its file stands
	}
	return syncDir(filepath.Dir(path))
}

// MeshKey is the key the relays of the servers sharing this identity (the
// replicas of one mesh) authenticate FORWARDs to each other with.
func (id Identity) MeshKey() []byte { return id.derive("wire relay mesh v1") }

// MapKey keys the map digests of the servers sharing this identity.
func (id Identity) MapKey() []byte { return id.derive("wire map digest v1") }

// derive is a key for one purpose, from the TLS key that the servers of
// one mesh share and nobody else has; nil without one.
func (id Identity) derive(purpose string) []byte {
	if id.Cert.PrivateKey == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey)
	if err != nil {
		return nil // none, rather than one anybody could guess
	}
	h := hmac.New(sha256.New, der)
	h.Write([]byte(purpose))
	return h.Sum(nil)
}
