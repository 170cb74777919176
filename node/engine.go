package node

import (
	"net/netip"
	"slices"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/wg"
)

// The daemon tells the engine what changed, not the whole config again:
// with 10,000 peers a one-peer change would otherwise cost each node
// milliseconds of building, comparing and copying 10,000 peers. A peer's
// WireGuard settings follow from its record, its path and what every
// peer's depend on (this node's public address, the relay being up); the
// daemon marks a peer stale when its record or path changes, and applies
// the stale ones alone as an engine Patch. A change of what every peer
// depends on, a failed change, and a mesh with a policy or the change
// that ends one (the filter is one for all peers) get a whole Set.

// fed is what the engine was given, and what changed since.
type fed struct {
	peers    map[string]wg.Peer // by node_id, as last given
	stale    map[string]bool    // node_ids whose record or path changed since
	basis    basis              // what every peer's settings were made from
	whole    bool               // the next apply is a Set: nothing given yet, or it failed
	filtered int                // peers that came with a filter (a policy)
	filter   bool               // the last Set had a filter, which only a Set removes
}

// basis is what every peer's WireGuard settings depend on.
type basis struct {
	publicIP string // peers behind the same NAT are reached on their LAN address
	relayUp  bool   // relayed peers are reached through the relay only while it is up
}

func newFed() fed {
	return fed{peers: map[string]wg.Peer{}, stale: map[string]bool{}, whole: true}
}

// added and dropped count the peers with a filter as the map changes.
func (f *fed) added(p api.Peer) {
	if p.Filter != nil {
		f.filtered++
	}
}

func (f *fed) dropped(p api.Peer) {
	if p.Filter != nil {
		f.filtered--
	}
}

// pathChanged marks a peer's settings as stale after its path changed.
// Callers hold d.mu.
func (d *Daemon) pathChanged(nodeID string) { d.fed.stale[nodeID] = true }

// apply gives the engine the WireGuard config for the current peer map:
// what changed as a Patch, or all of it. Only Start (before the loops
// run) and the reconciler call it.
func (d *Daemon) apply() error {
	addr, err := d.cfg.Address()
	if err != nil {
		return err
	}
	d.mu.Lock()
	now := basis{publicIP: d.publicIP, relayUp: d.relay.up}
	whole := d.fed.whole || d.fed.filtered > 0 || d.fed.filter || d.fed.basis != now
	var cfg wg.Config
	var patch wg.Patch
	var moved []wg.Peer
	if whole {
		cfg, moved = d.wholeConfig(addr)
	} else {
		patch, moved = d.stalePatch()
	}
	d.fed.basis, d.fed.whole = now, false
	clear(d.fed.stale)
	d.mu.Unlock()
	switch {
	case whole:
		err = d.engine.Set(cfg)
	case len(patch.Peers)+len(patch.Remove) > 0:
		err = d.engine.Patch(patch)
	}
	if err != nil {
		d.mu.Lock()
		d.fed.whole = true // the engine's state is not known: all of it next time
		d.mu.Unlock()
		return err
	}
	d.nudge(addr.Addr(), moved)
	return nil
}

// wholeConfig is the whole WireGuard config, and the peers whose endpoint
// moved. Callers hold d.mu.
func (d *Daemon) wholeConfig(addr netip.Prefix) (wg.Config, []wg.Peer) {
	cfg := wg.Config{PrivateKey: d.keys.WG, ListenPort: d.cfg.ListenPort, Address: addr, Filter: d.filterRules()}
	given := make(map[string]wg.Peer, len(d.peers))
	var moved []wg.Peer
	for id, p := range d.peers {
		peer, ok := d.peerSettings(p)
		if !ok {
			continue
		}
		if old, ok := d.fed.peers[id]; ok && old.Endpoint != peer.Endpoint {
			moved = append(moved, peer)
		}
		given[id] = peer
		cfg.Peers = append(cfg.Peers, peer)
	}
	d.fed.peers, d.fed.filter = given, cfg.Filter != nil
	return cfg, moved
}

// stalePatch is the change to the stale peers' settings, and those whose
// endpoint moved. Callers hold d.mu.
func (d *Daemon) stalePatch() (wg.Patch, []wg.Peer) {
	var patch wg.Patch
	var moved []wg.Peer
	for id := range d.fed.stale {
		old, had := d.fed.peers[id]
		p, known := d.peers[id]
		peer, ok := wg.Peer{}, false
		if known {
			peer, ok = d.peerSettings(p)
		}
		switch {
		case !ok && had:
			patch.Remove = append(patch.Remove, old.PublicKey)
			delete(d.fed.peers, id)
		case !ok:
		case had && samePeer(old, peer):
		default:
			if had && old.PublicKey != peer.PublicKey {
				patch.Remove = append(patch.Remove, old.PublicKey) // it has a new WireGuard key
			}
			if had && old.Endpoint != peer.Endpoint {
				moved = append(moved, peer)
			}
			patch.Peers = append(patch.Peers, peer)
			d.fed.peers[id] = peer
		}
	}
	// A key that one node left and another took (or kept) is patched, not
	// removed.
	if len(patch.Remove) > 0 {
		patched := make(map[wg.Key]bool, len(patch.Peers))
		for _, p := range patch.Peers {
			patched[p.PublicKey] = true
		}
		patch.Remove = slices.DeleteFunc(patch.Remove, func(k wg.Key) bool { return patched[k] })
	}
	return patch, moved
}

// peerSettings is p as WireGuard needs it, or false (and a warning) if
// its record cannot be used. Callers hold d.mu.
func (d *Daemon) peerSettings(p api.Peer) (wg.Peer, bool) {
	peer, err := d.wgPeer(p)
	if err != nil {
		d.log.Warn("skipping peer", "node", p.NodeName, "err", err)
		return wg.Peer{}, false
	}
	return peer, true
}

func samePeer(a, b wg.Peer) bool {
	return a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint && slices.Equal(a.AllowedIPs, b.AllowedIPs)
}
