// Package filter is wire's packet filter: what a node accepts from each
// of its peers over the mesh, as the server's policy says, and the
// stateful matching that lets replies to this node's own connections in.
package filter

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Proto is an IP protocol number. Any stands for TCP, UDP and ICMP, which
// is what a policy rule without "proto" allows (as in Tailscale's).
type Proto uint8

// The protocols a policy names.
const (
	Any  Proto = 0
	ICMP Proto = 1
	TCP  Proto = 6
	UDP  Proto = 17
)

func (p Proto) String() string {
	switch p {
	case Any:
		return "*"
	case ICMP:
		return "icmp"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// ParseProto reads a protocol's name (tcp, udp, icmp, * or "") or number.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "", "*":
		return Any, nil
	case "icmp":
		return ICMP, nil
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("protocol %q: want tcp, udp, icmp or a number from 1 to 255", s)
	}
	return Proto(n), nil
}

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// AllPorts is every port.
var AllPorts = PortRange{0, 65535}

// Contains says whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.First <= port && port <= r.Last }

func (r PortRange) String() string {
	switch {
	case r == AllPorts:
		return "*"
	case r.First == r.Last:
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// ParsePortRange reads *, a port, or FIRST-LAST.
func ParsePortRange(s string) (PortRange, error) {
	if s == "*" {
		return AllPorts, nil
	}
	first, last, isRange := strings.Cut(s, "-")
	if !isRange {
		last = first
	}
	f, ferr := strconv.ParseUint(first, 10, 16)
	l, lerr := strconv.ParseUint(last, 10, 16)
	switch {
	case ferr != nil || lerr != nil:
		return PortRange{}, fmt.Errorf("port %q: want *, a port from 0 to 65535, or FIRST-LAST", s)
	case f > l:
		return PortRange{}, fmt.Errorf("ports %q: the first is above the last", s)
	}
	return PortRange{uint16(f), uint16(l)}, nil
}

// Allow is one kind of traffic a peer may send to this node: a protocol
// and the destination ports. Ports mean nothing to ICMP: an Allow of ICMP
// or of Any, whatever its ports, lets the peer ping (as Tailscale's
// filter does).
type Allow struct {
	Proto Proto
	Ports PortRange
}

// String is the Allow as the server sends it: "tcp:22", "udp:1000-2000",
// "*:443" (TCP, UDP and ICMP), "*:*" or "icmp".
func (a Allow) String() string {
	if a.Proto == ICMP {
		return "icmp"
	}
	return a.Proto.String() + ":" + a.Ports.String()
}

// Accepts says whether a lets through a packet of proto to port. An Allow
// of Any is TCP, UDP and ICMP; any Allow of ICMP or Any lets ping. Asked
// about Any (TCP, UDP and ICMP at once), only an Allow of Any to port
// accepts.
func (a Allow) Accepts(proto Proto, port uint16) bool {
	switch {
	case proto == ICMP:
		return a.Proto == ICMP || a.Proto == Any
	case a.Proto == proto:
		return a.Ports.Contains(port)
	case a.Proto == Any:
		return (proto == TCP || proto == UDP) && a.Ports.Contains(port)
	}
	return false
}

// ParseAllow reads what String writes.
func ParseAllow(s string) (Allow, error) {
	if strings.EqualFold(s, "icmp") {
		return Allow{ICMP, AllPorts}, nil
	}
	proto, ports, ok := strings.Cut(s, ":")
	if !ok {
		return Allow{}, fmt.Errorf("allow %q: want PROTO:PORTS (tcp:22, *:1000-2000) or icmp", s)
	}
	p, err := ParseProto(proto)
	if err != nil {
		return Allow{}, fmt.Errorf("allow %q: %w", s, err)
	}
	r, err := ParsePortRange(ports)
	if err != nil {
		return Allow{}, fmt.Errorf("allow %q: %w", s, err)
	}
	if p == ICMP {
		r = AllPorts
	}
	return Allow{p, r}, nil
}

// Rules is what a node accepts over the mesh, by source VPN address. A
// source that is not in the map may only answer connections this node
// opened. A nil Rules accepts everything: the mesh has no policy.
type Rules map[netip.Addr][]Allow

// Clone returns a copy of r that shares nothing with it.
func (r Rules) Clone() Rules {
	if r == nil {
		return nil
	}
	out := make(Rules, len(r))
	for addr, allows := range r {
		out[addr] = slices.Clone(allows)
	}
	return out
}

// Equal says whether r and o are the same filter; nil (no filter) differs
// from empty Rules (only replies pass).
func (r Rules) Equal(o Rules) bool {
	return (r == nil) == (o == nil) && maps.EqualFunc(r, o, slices.Equal)
}
