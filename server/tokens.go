package server

import (
	"crypto/rand"
	"net/netip"
	"sync"

	"github.com/wire-mesh/wire/relay"
)

// tokens are the relay tokens of the nodes that asked for one, by VPN
// address. They live in memory only (nodes ask again after a restart) and
// have a lock of their own: the relay looks one up for every HELLO, and
// must not wait for the registry or the store.
type tokens struct {
	mu sync.RWMutex
	m  map[netip.Addr][]byte
}

func newTokens() *tokens { return &tokens{m: make(map[netip.Addr][]byte)} }

// get returns addr's token, making one on first use.
func (t *tokens) get(addr netip.Addr) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok, ok := t.m[addr]
	if !ok {
		tok = make([]byte, relay.TokenLen)
		rand.Read(tok)
		t.m[addr] = tok
	}
	return tok
}

func (t *tokens) lookup(addr netip.Addr) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tok, ok := t.m[addr]
	return tok, ok
}

// forget drops addr's token: its node has left the mesh.
func (t *tokens) forget(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, addr)
}
