//go:build linux

package lab

import "net/netip"

// Host adds a host directly on the internet, with publicIP on its eth0 and
// its default route via Gateway.
func (l *Lab) Host(name, publicIP string) *NS {
	l.t.Helper()
	ip := l.parseAddr(name, publicIP)
	l.claimPublic(ip, name)
	n := l.newNS(name)
	l.plug(n, "eth0", l.inet, "br0")
	l.address(n, "eth0", netip.PrefixFrom(ip, Internet.Bits()), netip.MustParseAddr(Gateway))
	return n
}

// NodeBehind adds a host on the router's LAN, with lanIP on its eth0 and
// its default route via the router.
func (l *Lab) NodeBehind(r *Router, name, lanIP string) *NS {
	l.t.Helper()
	n := l.newNS(name)
	l.attach(n, r, lanIP)
	return n
}

// Move rewires a node onto another router's LAN, as a laptop carried from
// one home to another: its eth0 is deleted, and a new eth0 on the other
// LAN gets lanIP and a default route via that router. The node's processes
// keep running.
func (l *Lab) Move(n *NS, r *Router, lanIP string) {
	l.t.Helper()
	if n.Router == nil {
		l.t.Fatalf("lab: Move %s: it is not on a router's LAN", n)
	}
	l.must(ipn(n, "link", "del", "eth0"))
	l.attach(n, r, lanIP)
}

// attach plugs a node into the router's LAN bridge and addresses it.
func (l *Lab) attach(n *NS, r *Router, lanIP string) {
	l.t.Helper()
	ip := l.parseAddr(n.Short, lanIP)
	if !r.LAN.Contains(ip) || ip == r.Gateway || ip == r.LAN.Masked().Addr() {
		l.t.Fatalf("lab: %s: %s is not a free host address of %s's LAN %s", n, ip, r, r.LAN)
	}
	l.plug(n, "eth0", r.NS, "lan")
	l.address(n, "eth0", netip.PrefixFrom(ip, r.LAN.Bits()), r.Gateway)
	n.Router = r
}

// plug connects a namespace to a bridge in another one with a veth pair:
// ifname on the inside, a fresh port name on the bridge's side. Both ends
// are made in their namespaces, never in the host's.
func (l *Lab) plug(n *NS, ifname string, outer *NS, bridge string) {
	l.t.Helper()
	port := l.nextPort("v")
	l.must(ipn(n, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", outer.Name))
	l.must(ipn(outer, "link", "set", port, "master", bridge, "up"))
	l.must(ipn(n, "link", "set", ifname, "up"))
}

// address gives an interface its address and the namespace its default
// route.
func (l *Lab) address(n *NS, ifname string, p netip.Prefix, via netip.Addr) {
	l.t.Helper()
	l.must(ipn(n, "addr", "add", p.String(), "dev", ifname))
	l.must(ipn(n, "route", "add", "default", "via", via.String(), "dev", ifname))
	n.IP, n.Iface = p.Addr(), ifname
}

func (l *Lab) parseAddr(owner, s string) netip.Addr {
	l.t.Helper()
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		l.t.Fatalf("lab: %s: %q is not an IPv4 address", owner, s)
	}
	return ip
}
