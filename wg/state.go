package wg

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/filter"
)

// netif is the operating system's side of an interface.
type netif interface {
	// setAddress replaces the address have (if valid) with want (if valid).
	setAddress(have, want netip.Prefix) error
	up() error
	// remove deletes the interface if it is still there and releases
	// what the netif holds.
	remove() error
}

// state is what an engine applied, and how it applies a change: the same
// for both engines but for apply, which is IPC text for wireguard-go and
// wgctrl for the kernel, and enforce, which is the TUN device's filter for
// wireguard-go and nftables for the kernel.
type state struct {
	applied Config       // all but the peers, which are in peers
	peers   map[Key]Peer // the peers applied, by key
	apply   func(wgtypes.Config) error
	netif   netif
	// enforce applies Config.Filter (nil: accept everything); nil for an
	// engine that has no filter.
	enforce func(filter.Rules) error
	// enforced is what enforce applied last, if known says so: known is
	// false before the first Set and after enforce failed, so that the
	// next Set applies its filter even if nil (which clears what a crashed
	// run left behind).
	enforced filter.Rules
	known    bool
	set1     bool // Set succeeded once: Patch has something to patch
}

// set brings the interface from the applied Config to cfg, whose
// ListenPort the engine has filled in. Nothing is sent if nothing changed.
// The filter comes first: a change that removes a peer's access takes
// effect before anything else, and if the filter cannot be applied,
// nothing is.
func (s *state) set(cfg Config) error {
	if err := validate(cfg); err != nil {
		return err
	}
	if err := s.setFilter(cfg.Filter); err != nil {
		return err
	}
	if d := diffFrom(s.applied, s.peers, cfg); !isEmpty(d) {
		if err := s.apply(d); err != nil {
			s.forget(cfg.Peers)
			s.applied = Config{Address: s.applied.Address}
			return err
		}
	}
	have := s.applied.Address
	s.applied, s.peers = settings(cfg), byKey(clone(cfg).Peers)
	s.set1 = true
	if cfg.Address == have {
		return nil
	}
	if err := s.netif.setAddress(have, cfg.Address); err != nil {
		s.applied.Address = have // tried again on the next Set
		return err
	}
	return nil
}

// patch applies p to the peers applied, in time that grows with p: the
// peers it does not name are not looked at.
func (s *state) patch(p Patch) error {
	if !s.set1 {
		return errors.New("wg: Patch before the first Set")
	}
	if err := validatePatch(p); err != nil {
		return err
	}
	var d wgtypes.Config
	for _, k := range p.Remove {
		if _, ok := s.peers[k]; ok {
			d.Peers = append(d.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
		}
	}
	d.Peers = append(d.Peers, changedFrom(s.peers, p.Peers)...)
	if len(d.Peers) == 0 {
		return nil
	}
	if err := s.apply(d); err != nil {
		s.forget(p.Peers)
		for _, k := range p.Remove {
			if _, ok := s.peers[k]; ok {
				s.peers[k] = unknown(k)
			}
		}
		return err
	}
	for _, k := range p.Remove {
		delete(s.peers, k)
	}
	for _, peer := range p.Peers {
		peer.AllowedIPs = slices.Clone(peer.AllowedIPs)
		s.peers[peer.PublicKey] = peer
	}
	return nil
}

// forget marks the peers applied and those of want as in an unknown
// state, after a change failed part way: the next Set sends every desired
// peer in full and removes the others, and sends the key and port again.
func (s *state) forget(want []Peer) {
	for k := range s.peers {
		s.peers[k] = unknown(k)
	}
	if s.peers == nil {
		s.peers = make(map[Key]Peer, len(want))
	}
	for _, p := range want {
		s.peers[p.PublicKey] = unknown(p.PublicKey)
	}
}

// unknown is a peer whose state is not known. Its one allowed IP is the
// invalid zero prefix, which no valid Config has, so it never compares as
// unchanged.
func unknown(k Key) Peer { return Peer{PublicKey: k, AllowedIPs: []netip.Prefix{{}}} }

// setFilter applies rules unless they are known to be applied already.
func (s *state) setFilter(rules filter.Rules) error {
	if s.enforce == nil || s.known && s.enforced.Equal(rules) {
		return nil
	}
	s.known = false
	if err := s.enforce(rules); err != nil {
		return err
	}
	s.enforced, s.known = rules.Clone(), true
	return nil
}

// validate rejects what WireGuard would refuse or silently merge.
func validate(cfg Config) error {
	if cfg.ListenPort < 0 || cfg.ListenPort > 65535 {
		return fmt.Errorf("wg: listen port %d out of range", cfg.ListenPort)
	}
	return validatePeers(cfg.Peers, nil)
}

// validatePatch rejects a Patch that names a peer twice.
func validatePatch(p Patch) error {
	removed := make(map[Key]bool, len(p.Remove))
	for _, k := range p.Remove {
		removed[k] = true
	}
	return validatePeers(p.Peers, removed)
}

// validatePeers rejects peers without a key or with an invalid allowed IP,
// and a key listed twice or also in taken.
func validatePeers(peers []Peer, taken map[Key]bool) error {
	seen := make(map[Key]bool, len(peers))
	for _, p := range peers {
		if p.PublicKey == (Key{}) {
			return fmt.Errorf("wg: a peer has no public key")
		}
		if seen[p.PublicKey] || taken[p.PublicKey] {
			return fmt.Errorf("wg: peer %v is listed twice", p.PublicKey)
		}
		seen[p.PublicKey] = true
		if i := slices.IndexFunc(p.AllowedIPs, func(p netip.Prefix) bool { return !p.IsValid() }); i >= 0 {
			return fmt.Errorf("wg: peer %v: allowed IP %d is not a valid prefix", p.PublicKey, i)
		}
	}
	return nil
}

// settings is cfg without its peers (state.peers holds them) and its
// filter (state.enforced: it must survive a failed apply).
func settings(cfg Config) Config {
	cfg.Peers = nil
	cfg.Filter = nil
	return cfg
}

// clone copies cfg so that the caller may reuse its slices, leaving out
// the filter.
func clone(cfg Config) Config {
	cfg.Peers = slices.Clone(cfg.Peers)
	for i := range cfg.Peers {
		cfg.Peers[i].AllowedIPs = slices.Clone(cfg.Peers[i].AllowedIPs)
	}
	cfg.Filter = nil
	return cfg
}
