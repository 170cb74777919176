//go:build linux

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// NAT is how a router maps its LAN's flows to its WAN address.
type NAT int

const (
	// NATCone is plain masquerade: one public port per LAN socket for every
	// destination (endpoint-independent mapping), and inbound packets only
	// from where that socket sent to (port-restricted filtering), as a
	// typical home router. Hole punching works through it.
	NATCone NAT = iota
	// NATSymmetric is masquerade random: a new random public port for each
	// destination. Hole punching fails through it; that is what the relay
	// is for.
	NATSymmetric
)

func (k NAT) String() string {
	switch k {
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	}
	return fmt.Sprintf("NAT(%d)", int(k))
}

// masquerade is the postrouting rule of each kind.
func (k NAT) masquerade() string {
	if k == NATSymmetric {
		return `oifname "wan" masquerade random`
	}
	return `oifname "wan" masquerade`
}

// Router is a home router: a namespace with a WAN port "wan" on the
// internet and a LAN bridge "lan", forwarding and NATing between them.
type Router struct {
	*NS                  // IP is the WAN address
	LAN     netip.Prefix // the LAN's range
	Gateway netip.Addr   // the router's address on its LAN: its nodes' default route

	mu   sync.Mutex
	kind NAT
}

// Router adds a home router with wanIP on the internet and the LAN
// lanCIDR (the router takes its first address), NATing as kind says. Its
// nftables ruleset drops what the WAN side sends unless it belongs to a
// flow from the LAN, in the forward and in the input hook alike: a router
// that let unsolicited packets reach its own stack would spoil hole
// punching.
func (l *Lab) Router(name, wanIP, lanCIDR string, kind NAT) *Router {
	l.t.Helper()
	ip := l.parseAddr(name, wanIP)
	lan, err := netip.ParsePrefix(lanCIDR)
	if err != nil || !lan.Addr().Is4() || lan.Bits() > 30 || lan.Overlaps(Internet) {
		l.t.Fatalf("lab: router %s: LAN %q: want an IPv4 CIDR of at most /30 outside %s", name, lanCIDR, Internet)
	}
	lan = lan.Masked()
	l.claimPublic(ip, name)
	r := &Router{NS: l.newNS(name), LAN: lan, Gateway: lan.Addr().Next(), kind: kind}
	l.plug(r.NS, "wan", l.inet, "br0")
	l.address(r.NS, "wan", netip.PrefixFrom(ip, Internet.Bits()), netip.MustParseAddr(Gateway))
	l.must(ipn(r.NS, "link", "add", "lan", "type", "bridge"))
	l.must(ipn(r.NS, "addr", "add", netip.PrefixFrom(r.Gateway, lan.Bits()).String(), "dev", "lan"))
	l.must(ipn(r.NS, "link", "set", "lan", "up"))
	l.must(sysctl(r.NS, "net/ipv4/ip_forward", "1"))
	// Frames bridged between two LAN hosts are not routed: keep them out
	// of the forward hook, as a home router's switch does.
	l.must(sysctl(r.NS, "net/bridge/bridge-nf-call-iptables", "0"))
	l.must(nft(r.NS, ruleset(kind)))
	return r
}

// ruleset is a router's whole nftables configuration.
func ruleset(kind NAT) string {
	return `table ip nat {
	chain post { type nat hook postrouting priority 100; policy accept; ` + kind.masquerade() + `; }
}
table ip filter {
	chain fw { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname "lan" accept; }
	chain in { type filter hook input priority 0; policy drop; ct state established,related accept; iifname "lan" accept; }
}
`
}

// Kind is how the router NATs now.
func (r *Router) Kind() NAT {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kind
}

// SetKind replaces the router's masquerade rule, in one nftables
// transaction. Flows the router has already mapped keep their public port
// until their conntrack entries expire; new flows get the new kind.
func (r *Router) SetKind(kind NAT) {
	r.lab.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lab.must(nft(r.NS, "flush chain ip nat post\nadd rule ip nat post "+kind.masquerade()+"\n"))
	r.kind = kind
}

// DropUDP makes the router drop every UDP datagram from its LAN but DNS,
// as networks that allow only the web do; flows already mapped stop too.
// AllowUDP undoes it.
func (r *Router) DropUDP() {
	r.lab.t.Helper()
	r.lab.must(nft(r.NS, `add chain ip filter blockudp
flush chain ip filter blockudp
add rule ip filter blockudp iifname "lan" udp dport != 53 drop
`))
	if rules, err := Run(r.NS, "nft", "list", "chain", "ip", "filter", "fw"); err == nil && !strings.Contains(rules, "jump blockudp") {
		r.lab.must(nft(r.NS, "insert rule ip filter fw jump blockudp\n"))
	}
}

// AllowUDP lets UDP through again after DropUDP.
func (r *Router) AllowUDP() {
	r.lab.t.Helper()
	r.lab.must(nft(r.NS, "flush chain ip filter blockudp\n"))
}

// Ruleset is the router's nftables ruleset as nft lists it.
func (r *Router) Ruleset() (string, error) {
	return Run(r.NS, "nft", "list", "ruleset")
}

// nft loads a script into the namespace's nftables.
func nft(n *NS, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := Command(ctx, n, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("in %s: nft -f: %w: %s\nscript:\n%s", n, err, strings.TrimSpace(string(out)), script)
	}
	return nil
}
