package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// ParseSubnet parses WIRE_VPN_SUBNET: the seed's two-octet prefix ("10.99",
// meaning 10.99.0.0/16), three octets ("10.99.7" for a /24), or a CIDR
// ("100.64.0.0/10"). Only IPv4 prefixes from /8 to /30 are accepted.
func ParseSubnet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		octets := strings.Count(s, ".") + 1
		if octets < 1 || octets > 3 {
			return netip.Prefix{}, fmt.Errorf("VPN subnet %q: want a prefix such as 10.99 or a CIDR such as 10.99.0.0/16", s)
		}
		s = s + strings.Repeat(".0", 4-octets) + fmt.Sprintf("/%d", 8*octets)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("VPN subnet: %w", err)
	}
	if !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("VPN subnet %s: want an IPv4 prefix from /8 to /30", p)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("VPN subnet %s has host bits set; did you mean %s?", p, p.Masked())
	}
	return p, nil
}

// ErrSubnetFull says every host address of the VPN subnet is taken.
var ErrSubnetFull = errors.New("the VPN subnet is full: remove nodes with `wire server node remove NAME` or choose a larger WIRE_VPN_SUBNET")

// allocator hands out the VPN subnet's host addresses, each to one node.
type allocator struct {
	prefix netip.Prefix
	base   uint32
	size   uint32 // addresses in the prefix, network and broadcast included
	used   map[netip.Addr]string
	// elsewhereAt is, for each address taken elsewhere, the registry's
	// mark when it was found taken (see releaseElsewhere).
	elsewhereAt map[netip.Addr]uint64
}

func newAllocator(prefix netip.Prefix) *allocator {
	a4 := prefix.Addr().As4()
	return &allocator{
		prefix: prefix,
		base:   binary.BigEndian.Uint32(a4[:]),
		size:   1 << (32 - prefix.Bits()),
		used:   make(map[netip.Addr]string),

		elsewhereAt: make(map[netip.Addr]uint64),
	}
}

// take records that nodeID holds addr, e.g. when loading the store.
func (a *allocator) take(addr netip.Addr, nodeID string) error {
	if !a.usable(addr) {
		return fmt.Errorf("address %s is not a host address of the VPN subnet %s", addr, a.prefix)
	}
	if owner, ok := a.used[addr]; ok && owner != nodeID && owner != elsewhere {
		return fmt.Errorf("address %s is held by two nodes, %s and %s", addr, owner, nodeID)
	}
	a.used[addr] = nodeID
	delete(a.elsewhereAt, addr)
	return nil
}

func (a *allocator) release(addr netip.Addr) {
	delete(a.used, addr)
	delete(a.elsewhereAt, addr)
}

// elsewhere is the owner of an address that another server sharing the
// store gave to a node this server does not know yet.
const elsewhere = "(another server's)"

// takenElsewhere keeps addr from being chosen until its node is known; at
// is the registry's mark now.
func (a *allocator) takenElsewhere(addr netip.Addr, at uint64) {
	a.used[addr] = elsewhere
	a.elsewhereAt[addr] = at
}

// releaseElsewhere frees the addresses found taken elsewhere before
// mark, once a whole read of the store's changes that began at mark has
// been applied: the node that held one, enrolled before it was found
// taken, would have come with that read, so if none claimed it, that node
// was removed meanwhile. Without this, such an address stayed out of use
// until a restart.
func (a *allocator) releaseElsewhere(mark uint64) {
	for addr, at := range a.elsewhereAt {
		if at < mark {
			a.release(addr)
		}
	}
}

func (a *allocator) usable(addr netip.Addr) bool {
	if !addr.Is4() || !a.prefix.Contains(addr) {
		return false
	}
	host := a.host(addr)
	return host != 0 && host != a.size-1
}

func (a *allocator) host(addr netip.Addr) uint32 {
	b := addr.As4()
	return binary.BigEndian.Uint32(b[:]) - a.base
}

func (a *allocator) addr(host uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a.base+host)
	return netip.AddrFrom4(b)
}

// preferred is the seed's deterministic address for a node: the leading
// bits of its identity hash (the node_id is sha256(hostname+MAC) in hex)
// become the host part, so 10.99.h[0].h[1] in the default /16.
func (a *allocator) preferred(nodeID string) uint32 {
	h, err := hex.DecodeString(nodeID)
	if err != nil || len(h) < 4 {
		sum := sha256.Sum256([]byte(nodeID))
		h = sum[:]
	}
	return binary.BigEndian.Uint32(h) >> a.prefix.Bits()
}

// allocate picks nodeID's address: its preferred one if free, else the
// next free one after it (wrapping), skipping network and broadcast. The
// choice depends only on the node and on which addresses are taken.
func (a *allocator) allocate(nodeID string) (netip.Addr, error) {
	if uint32(len(a.used)) >= a.size-2 {
		return netip.Addr{}, ErrSubnetFull
	}
	start := a.preferred(nodeID)
	for i := uint32(0); i < a.size; i++ {
		cand := a.addr((start + i) % a.size)
		if a.usable(cand) {
			if _, taken := a.used[cand]; !taken {
				a.used[cand] = nodeID
				return cand, nil
			}
		}
	}
	return netip.Addr{}, ErrSubnetFull
}

// ParseDNSDomain checks a mesh DNS domain: one or more DNS labels (letters,
// digits, hyphens; no leading or trailing hyphen), lowercased, without the
// final dot.
func ParseDNSDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if !dnsLabel.MatchString(l) {
			return "", fmt.Errorf("--dns-domain %q: want DNS labels of letters, digits and hyphens, e.g. wire or mesh.example.com", s)
		}
	}
	if len(d) > 200 {
		return "", fmt.Errorf("--dns-domain %q: too long", s)
	}
	return d, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
