package wg

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// diff returns the change that takes an interface configured as have to
// want, for both engines: the private key and listen port only if they
// changed (a zero ListenPort never does), Remove for each peer that is
// gone, and for each new or changed peer its allowed IPs (replacing the
// old ones) and Keepalive, with its endpoint only if the desired endpoint
// changed and is usable. Peers that did not change are not mentioned, so
// their sessions and roamed endpoints survive.
func diff(have, want Config) wgtypes.Config {
	return diffFrom(have, byKey(have.Peers), want)
}

// diffFrom is diff from an interface configured as have, with the peers
// in peers.
func diffFrom(have Config, peers map[Key]Peer, want Config) wgtypes.Config {
	var d wgtypes.Config
	if want.PrivateKey != have.PrivateKey {
		d.PrivateKey = &want.PrivateKey
	}
	if want.ListenPort != 0 && want.ListenPort != have.ListenPort {
		d.ListenPort = &want.ListenPort
	}
	d.Peers = append(removed(peers, want.Peers), changedFrom(peers, want.Peers)...)
	return d
}

// isEmpty reports whether applying d would change nothing.
func isEmpty(d wgtypes.Config) bool {
	return d.PrivateKey == nil && d.ListenPort == nil && d.FirewallMark == nil &&
		!d.ReplacePeers && len(d.Peers) == 0
}

// removed returns a Remove for each peer of have that is not in want.
func removed(have map[Key]Peer, want []Peer) []wgtypes.PeerConfig {
	keep := byKey(want)
	var out []wgtypes.PeerConfig
	for k := range have {
		if _, ok := keep[k]; !ok {
			out = append(out, wgtypes.PeerConfig{PublicKey: k, Remove: true})
		}
	}
	slices.SortFunc(out, func(a, b wgtypes.PeerConfig) int { return bytes.Compare(a.PublicKey[:], b.PublicKey[:]) })
	return out
}

// changedFrom returns the configuration of each peer of want that is not
// in have or differs from it there.
func changedFrom(have map[Key]Peer, want []Peer) []wgtypes.PeerConfig {
	var out []wgtypes.PeerConfig
	for _, p := range want {
		o, existed := have[p.PublicKey]
		endpoint := usable(p.Endpoint) && (!existed || p.Endpoint != o.Endpoint)
		if existed && !endpoint && samePrefixes(o.AllowedIPs, p.AllowedIPs) {
			continue
		}
		out = append(out, peerConfig(p, endpoint))
	}
	return out
}

// peerConfig is the full configuration of p, with its endpoint or not.
func peerConfig(p Peer, endpoint bool) wgtypes.PeerConfig {
	keepalive := Keepalive
	pc := wgtypes.PeerConfig{
		PublicKey:                   p.PublicKey,
		PersistentKeepaliveInterval: &keepalive,
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  ipNets(p.AllowedIPs),
	}
	if endpoint {
		pc.Endpoint = net.UDPAddrFromAddrPort(unmap(p.Endpoint))
	}
	return pc
}

func byKey(peers []Peer) map[Key]Peer {
	m := make(map[Key]Peer, len(peers))
	for _, p := range peers {
		m[p.PublicKey] = p
	}
	return m
}

// usable reports whether WireGuard can send to ep.
func usable(ep netip.AddrPort) bool {
	return ep.IsValid() && ep.Port() != 0 && !ep.Addr().IsUnspecified()
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// samePrefixes reports whether a and b hold the same networks, in any
// order.
func samePrefixes(a, b []netip.Prefix) bool {
	return slices.Equal(sortedMasked(a), sortedMasked(b))
}

func sortedMasked(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return slices.Compact(out)
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, len(ps))
	for i, p := range ps {
		p = p.Masked()
		out[i] = net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	return out
}
