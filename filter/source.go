package filter

import (
	"cmp"
	"net/netip"
	"slices"
)

// Source is what Rules let one source send, in a normal form that both
// enforcements (the userspace matcher and nftables) are built from: Any
// spelled out as TCP, UDP and ICMP, port ranges sorted and merged.
type Source struct {
	Addr netip.Addr // IPv4
	TCP  []PortRange
	UDP  []PortRange
	// ICMP lets the source ping, and send the other ICMP messages that are
	// neither errors nor echo replies.
	ICMP bool
	// Protocols are other IP protocols allowed whole (they have no ports
	// to match), such as GRE.
	Protocols []Proto
}

// Sources returns r in normal form, one Source per IPv4 address (IPv4
// mapped IPv6 addresses count as IPv4), sorted by address. Other
// addresses are left out: wire's VPN is IPv4, and the filter drops the
// rest.
func (r Rules) Sources() []Source {
	byAddr := make(map[netip.Addr]*Source, len(r))
	for addr, allows := range r {
		addr = addr.Unmap()
		if !addr.Is4() {
			continue
		}
		s := byAddr[addr]
		if s == nil {
			s = &Source{Addr: addr}
			byAddr[addr] = s
		}
		for _, a := range allows {
			s.add(a)
		}
	}
	out := make([]Source, 0, len(byAddr))
	for _, s := range byAddr {
		s.normalize()
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Source) int { return a.Addr.Compare(b.Addr) })
	return out
}

func (s *Source) add(a Allow) {
	switch a.Proto {
	case Any:
		s.TCP = append(s.TCP, a.Ports)
		s.UDP = append(s.UDP, a.Ports)
		s.ICMP = true
	case TCP:
		s.TCP = append(s.TCP, a.Ports)
	case UDP:
		s.UDP = append(s.UDP, a.Ports)
	case ICMP:
		s.ICMP = true
	default:
		s.Protocols = append(s.Protocols, a.Proto)
	}
}

func (s *Source) normalize() {
	s.TCP = mergeRanges(s.TCP)
	s.UDP = mergeRanges(s.UDP)
	slices.Sort(s.Protocols)
	s.Protocols = slices.Compact(s.Protocols)
}

// mergeRanges sorts rs and joins the ranges that overlap or touch. Ranges
// whose First is above their Last hold no port and are dropped.
func mergeRanges(rs []PortRange) []PortRange {
	rs = slices.DeleteFunc(rs, func(r PortRange) bool { return r.First > r.Last })
	slices.SortFunc(rs, func(a, b PortRange) int { return cmp.Compare(a.First, b.First) })
	var out []PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.First) <= uint32(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// allowsPort says whether the source may send proto (TCP or UDP) to port.
func (s *Source) allowsPort(proto uint8, port uint16) bool {
	rs := s.UDP
	if proto == uint8(TCP) {
		rs = s.TCP
	}
	for _, r := range rs {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// allowsProto says whether the source may send proto, a protocol without
// ports.
func (s *Source) allowsProto(proto uint8) bool {
	return slices.Contains(s.Protocols, Proto(proto))
}
