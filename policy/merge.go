package policy

import (
	"cmp"
	"slices"

	"github.com/wire-mesh/wire/filter"
)

// merge is the canonical form of allows, which it sorts in place: by
// protocol then port, each protocol's overlapping and adjacent ranges
// joined, the ports Any has taken out of TCP and UDP, and ICMP left out
// when there is Any (which lets ping whatever its ports). Nil if none.
func merge(allows []filter.Allow) []filter.Allow {
	if len(allows) == 0 {
		return nil
	}
	for i := range allows {
		if allows[i].Proto == filter.ICMP {
			allows[i].Ports = filter.AllPorts
		}
	}
	slices.SortFunc(allows, compareAllows)
	joined := join(allows)
	var anyPorts []filter.PortRange
	out := make([]filter.Allow, 0, len(joined))
	for _, a := range joined {
		switch a.Proto {
		case filter.Any:
			anyPorts = append(anyPorts, a.Ports)
			out = append(out, a)
		case filter.ICMP:
			if anyPorts == nil {
				out = append(out, a)
			}
		case filter.TCP, filter.UDP:
			for _, r := range subtract(a.Ports, anyPorts) {
				out = append(out, filter.Allow{Proto: a.Proto, Ports: r})
			}
		default:
			out = append(out, a)
		}
	}
	return out
}

func compareAllows(a, b filter.Allow) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Ports.First, b.Ports.First), cmp.Compare(a.Ports.Last, b.Ports.Last))
}

// join joins the overlapping and adjacent ranges of each protocol in
// sorted allows, in place.
func join(allows []filter.Allow) []filter.Allow {
	out := allows[:1]
	for _, a := range allows[1:] {
		last := &out[len(out)-1]
		if a.Proto == last.Proto && uint32(a.Ports.First) <= uint32(last.Ports.Last)+1 {
			last.Ports.Last = max(last.Ports.Last, a.Ports.Last)
			continue
		}
		out = append(out, a)
	}
	return out
}

// subtract is r without the sorted, disjoint ranges of cover.
func subtract(r filter.PortRange, cover []filter.PortRange) []filter.PortRange {
	var out []filter.PortRange
	next := uint32(r.First) // the first port of r not yet covered or kept
	for _, c := range cover {
		if uint32(c.Last) < next {
			continue
		}
		if c.First > r.Last {
			break
		}
		if uint32(c.First) > next {
			out = append(out, filter.PortRange{First: uint16(next), Last: c.First - 1})
		}
		next = uint32(c.Last) + 1
	}
	if next <= uint32(r.Last) {
		out = append(out, filter.PortRange{First: uint16(next), Last: r.Last})
	}
	return out
}
