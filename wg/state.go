package wg

import (
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
	applied Config
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
	if d := diff(s.applied, cfg); !isEmpty(d) {
		if err := s.apply(d); err != nil {
			s.applied = forgotten(s.applied, cfg)
			return err
		}
	}
	have := s.applied.Address
	s.applied = clone(cfg)
	if cfg.Address == have {
		return nil
	}
	if err := s.netif.setAddress(have, cfg.Address); err != nil {
		s.applied.Address = have // tried again on the next Set
		return err
	}
	return nil
}

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
	seen := make(map[Key]bool, len(cfg.Peers))
	for _, p := range cfg.Peers {
		if p.PublicKey == (Key{}) {
			return fmt.Errorf("wg: a peer has no public key")
		}
		if seen[p.PublicKey] {
			return fmt.Errorf("wg: peer %v is listed twice", p.PublicKey)
		}
		seen[p.PublicKey] = true
		if i := slices.IndexFunc(p.AllowedIPs, func(p netip.Prefix) bool { return !p.IsValid() }); i >= 0 {
			return fmt.Errorf("wg: peer %v: allowed IP %d is not a valid prefix", p.PublicKey, i)
		}
	}
	return nil
}

// clone copies cfg so that the caller may reuse its slices, leaving out
// the filter: what was enforced is state.enforced, kept apart because it
// must survive a failed apply (see forgotten).
func clone(cfg Config) Config {
	cfg.Peers = slices.Clone(cfg.Peers)
	for i := range cfg.Peers {
		cfg.Peers[i].AllowedIPs = slices.Clone(cfg.Peers[i].AllowedIPs)
	}
	cfg.Filter = nil // what was enforced is state.enforced
	return cfg
}

// forgotten is what is known of the interface after a change to cfg
// failed part way: the peers of both, in an unknown state, so that the
// next Set sends every desired peer in full and removes the others, and
// sends the key and port again. Each peer's one allowed IP is the invalid
// zero prefix, which no valid Config has, so none compares as unchanged.
func forgotten(applied, cfg Config) Config {
	out := Config{Address: applied.Address}
	seen := make(map[Key]bool)
	for _, p := range slices.Concat(applied.Peers, cfg.Peers) {
		if !seen[p.PublicKey] {
			seen[p.PublicKey] = true
			out.Peers = append(out.Peers, Peer{PublicKey: p.PublicKey, AllowedIPs: []netip.Prefix{{}}})
		}
	}
	return out
}
