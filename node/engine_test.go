package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
	"github.com/wire-mesh/wire/wg"
	"github.com/wire-mesh/wire/wg/wgtest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fedDaemon is a joined daemon on a fake engine, driven by hand (see
// applyAnswer).
func fedDaemon(t testing.TB) (*Daemon, *wgtest.Engine) {
	t.Helper()
	env := servertest.Start(t, "")
	dir := t.TempDir()
	k := env.Key(t, false)
	if _, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: "self", Port: 51820, Interface: "wire-fed", NodeID: "id-self"}); err != nil {
		t.Fatal(err)
	}
	eng := wgtest.New("wire-fed")
	d, err := New(Options{Dir: dir, NewEngine: func(wg.Options) (wg.Engine, error) { return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	d.engine = eng
	d.openNames()
	return d, eng
}

// applyAnswer handles a /peers answer as the poll loop and the reconciler
// do: merged, applied to the engine, and given to the agent and the
// resolver.
func applyAnswer(t testing.TB, d *Daemon, resp api.PeersResponse) {
	t.Helper()
	ch, _ := d.merge(resp)
	if err := d.apply(); err != nil {
		t.Fatal(err)
	}
	d.peersMoved(context.Background(), ch)
}

// A change of some peers reaches the engine as a Patch of those peers
// alone; what every peer depends on, and a failure, make the next change
// a whole Set. Either way the engine ends up where a Set of everything
// would put it.
func TestEngineIsPatched(t *testing.T) {
	d, eng := fedDaemon(t)
	peers := fakePeers(50)
	applyAnswer(t, d, api.PeersResponse{Peers: peers, Full: true})
	if sets, patches, _ := eng.Calls(); sets != 1 || patches != 0 {
		t.Fatalf("the first answer made %d Sets and %d Patches, want one Set", sets, patches)
	}
	expect := func(what string, sets, patches int) wg.Patch {
		t.Helper()
		gotSets, gotPatches, last := eng.Calls()
		if gotSets != sets || gotPatches != patches {
			t.Fatalf("%s: %d Sets and %d Patches in all, want %d and %d", what, gotSets, gotPatches, sets, patches)
		}
		d.mu.Lock()
		given := d.fed.peers
		want, _ := d.wholeConfig(selfAddr(t, d))
		d.fed.peers = given
		d.mu.Unlock()
		got, _ := eng.Last()
		if !samePeers(got.Peers, want.Peers) {
			t.Fatalf("%s: the engine has %d peers, not those of the peer map (%d)", what, len(got.Peers), len(want.Peers))
		}
		return last
	}

	moved := peers[7]
	moved.NATPort = 41000
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{moved}})
	if p := expect("a peer moved", 1, 1); len(p.Peers) != 1 || len(p.Remove) != 0 {
		t.Errorf("the Patch for one peer's move: %+v", p)
	}
	applyAnswer(t, d, api.PeersResponse{Removed: []string{peers[3].NodeID}})
	if p := expect("a peer left", 1, 2); len(p.Peers) != 0 || len(p.Remove) != 1 {
		t.Errorf("the Patch for one peer leaving: %+v", p)
	}
	rekeyed := peers[9]
	rekeyed.WGPublicKey = fakePeers(1)[0].WGPublicKey
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{rekeyed}})
	if p := expect("a peer's new WireGuard key", 1, 3); len(p.Peers) != 1 || len(p.Remove) != 1 {
		t.Errorf("the Patch for a new key: %+v", p)
	}
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{rekeyed}}) // the same again
	expect("nothing new", 1, 3)

	d.mu.Lock()
	d.publicIP = peers[0].PublicIP // now behind the NAT of peer 0: its LAN address
	d.mu.Unlock()
	moved.NATPort = 41001
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{moved}})
	expect("this node's public address changed", 2, 3)

	eng.FailSet(errors.New("the engine fails"))
	moved.NATPort = 41002
	d.merge(api.PeersResponse{Peers: []api.Peer{moved}})
	if err := d.apply(); err == nil {
		t.Fatal("the Patch did not fail")
	}
	eng.FailSet(nil)
	moved.NATPort = 41003
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{moved}})
	expect("after a failure", 3, 3)

	filtered := peers[11]
	filtered.Filter = &api.PeerFilter{Accept: []string{"tcp:22"}}
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{filtered}})
	expect("a peer with a filter (a policy)", 4, 3)
	if cfg, _ := eng.Last(); cfg.Filter == nil {
		t.Fatal("a policy's filter did not reach the engine")
	}
	applyAnswer(t, d, api.PeersResponse{Peers: peers, Full: true}) // the policy removed
	expect("the policy removed", 5, 3)
	if cfg, _ := eng.Last(); cfg.Filter != nil {
		t.Error("the filter stayed after the policy was removed")
	}
	moved.NATPort = 41004
	applyAnswer(t, d, api.PeersResponse{Peers: []api.Peer{moved}})
	expect("a change without a policy again", 5, 4)
}

// selfAddr is this node's address.
func selfAddr(t *testing.T, d *Daemon) netip.Prefix {
	t.Helper()
	a, err := d.cfg.Address()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func samePeers(a, b []wg.Peer) bool {
	key := func(p wg.Peer) string { return p.PublicKey.String() + p.Endpoint.String() }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// TestIdlePeerStatus: a peer the engine holds asleep shows as idle, with
// the endpoint it was given, and does not count as tunnelled.
func TestIdlePeerStatus(t *testing.T) {
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := priv.PublicKey()
	p := api.Peer{NodeID: "id-2", NodeName: "n2", VPNIP: "10.99.0.2", WGPublicKey: key.String()}
	at := netip.MustParseAddrPort("203.0.113.2:51820")
	d := &Daemon{paths: map[string]*path{}}
	ps := d.peerStatus(p, map[wg.Key]wg.PeerStatus{key: {PublicKey: key, Endpoint: at, Idle: true}})
	if ps.Path != PathIdle || ps.Endpoint != at.String() || ps.LatestHandshake != nil {
		t.Errorf("an asleep peer's status = %+v; want path idle at %v, no handshake", ps, at)
	}
	if Tunnelled(ps.Path) || !Tunnelled(PathDirect) || !Tunnelled(PathRelay) || Tunnelled(PathNone) {
		t.Error("Tunnelled is wrong")
	}
}
