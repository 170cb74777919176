package wg

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
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
// wgctrl for the kernel.
type state struct {
	applied Config
	apply   func(wgtypes.Config) error
	netif   netif
}

// set brings the interface from the applied Config to cfg, whose
// ListenPort the engine has filled in. Nothing is sent if nothing changed.
func (s *state) set(cfg Config) error {
	if err := validate(cfg); err != nil {
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

// clone copies cfg so that the caller may reuse its slices.
func clone(cfg Config) Config {
	cfg.Peers = slices.Clone(cfg.Peers)
	for i := range cfg.Peers {
		cfg.Peers[i].AllowedIPs = slices.Clone(cfg.Peers[i].AllowedIPs)
	}
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
