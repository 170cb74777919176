// Package servertest runs a real coordination server on loopback for
// tests, and makes node identities to talk to it.
package servertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
)

// Env is a running server.
type Env struct {
	*server.Server
	Dir  string
	stop func()
}

// Stop shuts the server down and waits for it, as at the test's end.
func (e *Env) Stop() { e.stop() }

// Option changes the server's config before it starts.
type Option func(*server.Config)

// Open runs the server in --open mode.
func Open(c *server.Config) { c.Open = true }

// Start runs a server on 127.0.0.1 with a fresh state dir (or the dir of
// an earlier Env, to test restarts), stopped when the test ends.
func Start(t testing.TB, dir string, opts ...Option) *Env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := server.Config{
		StateDir: dir, Listen: "127.0.0.1:0", STUNListen: "127.0.0.1:0", RelayListen: "127.0.0.1:0",
		Subnet: netip.MustParsePrefix("10.99.0.0/16"), Version: "test",
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return &Env{Server: s, Dir: dir, stop: stop}
}

// Key creates a join key.
func (e *Env) Key(t testing.TB, reusable bool) api.JoinKey {
	t.Helper()
	k, err := e.CreateKey(context.Background(), reusable, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Node is a node's identity: its TLS certificate and WireGuard key.
type Node struct {
	Cert  tls.Certificate
	WGKey string
}

// NewNode makes a fresh node identity.
func NewNode(t testing.TB) Node {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := api.SelfSigned(priv, "wire-node")
	if err != nil {
		t.Fatal(err)
	}
	wg := make([]byte, 32)
	rand.Read(wg)
	return Node{Cert: cert, WGKey: base64.StdEncoding.EncodeToString(wg)}
}

// Client returns a client for the server with node n's identity (nil for
// none).
func (e *Env) Client(t testing.TB, n *Node) *api.Client {
	t.Helper()
	cfg := api.ClientConfig{URL: e.URL(), Pin: e.Identity().Pin}
	if n != nil {
		cfg.Cert = &n.Cert
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdle)
	return c
}

// Admin returns a client that authenticates with the admin token.
func (e *Env) Admin(t testing.TB) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: e.URL(), Pin: e.Identity().Pin, AdminToken: e.Identity().AdminToken})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Store keeps the mesh in the store that a --store value names.
func Store(store string) Option { return func(c *server.Config) { c.Store = store } }

// Replica starts another server sharing first's store (a PostgreSQL URL),
// with a state dir of its own holding first's identity, as an admin would
// copy it.
func Replica(t testing.TB, first *Env, store string, opts ...Option) *Env {
	t.Helper()
	dir := t.TempDir()
	CopyIdentity(t, first.Dir, dir)
	return Start(t, dir, append(opts, Store(store))...)
}

// CopyIdentity copies a server's TLS key and admin token from one state
// dir to another, as an admin setting up a replica does.
func CopyIdentity(t testing.TB, from, to string) {
	t.Helper()
	for _, f := range []string{server.KeyFile, server.TokenFile} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// StoredNames are the names of the nodes in store, sorted and joined by
// spaces, as `wire server nodes` lists them.
func StoredNames(t testing.TB, store *server.Store) string {
	t.Helper()
	nodes, err := store.List(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.NodeName
	}
	return strings.Join(names, " ")
}
