package server_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// TestRelayPeersResolvedAgain: a relay peer's name is resolved again, so a
// replica that moved behind its name is found without a restart; a name
// that stops resolving keeps its last address, and the others still move.
func TestRelayPeersResolvedAgain(t *testing.T) {
	// Addresses at start, so that no name server is asked; the names are
	// the fake resolver's below.
	env := servertest.Start(t, "", func(c *server.Config) { c.RelayPeers = []string{"127.0.0.1:4000", "127.0.0.2:4000"} })
	first := env.MeshPeers()
	if !slices.Equal(first, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4000"), netip.MustParseAddrPort("127.0.0.2:4000")}) {
		t.Fatalf("relay peers at start: %v", first)
	}
	moved := netip.MustParseAddrPort("127.0.0.9:4000")
	env.ResolveRelayPeersWith(func(name string) (netip.AddrPort, error) {
		if name == "127.0.0.1:4000" {
			return moved, nil
		}
		return netip.MustParseAddrPort("127.0.0.2:4000"), nil
	})
	if got := env.MeshPeers(); !slices.Equal(got, []netip.AddrPort{moved, first[1]}) {
		t.Errorf("after the first moved: %v, want %v then %v", got, moved, first[1])
	}
	movedToo := netip.MustParseAddrPort("127.0.0.3:4000")
	env.ResolveRelayPeersWith(func(name string) (netip.AddrPort, error) {
		if name == "127.0.0.1:4000" {
			return netip.AddrPort{}, errors.New("no answer from the name server")
		}
		return movedToo, nil
	})
	if got := env.MeshPeers(); !slices.Equal(got, []netip.AddrPort{moved, movedToo}) {
		t.Errorf("with one name not resolving: %v, want %v kept and %v", got, moved, movedToo)
	}
}
