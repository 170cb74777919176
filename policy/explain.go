package policy

import (
	"fmt"
	"strings"

	"github.com/wire-mesh/wire/filter"
)

// Decision is whether a node may send a kind of packet to another, and
// why.
type Decision struct {
	Accept bool
	Rule   int // the accepting rule's index in acls; -1 if none
	Line   int // the accepting rule's line; 0 if none
	Reason string
}

// Explain says whether from may send to a packet of proto to port, and
// why: the first rule that accepts it, with the src and dst entries that
// name the nodes, or, when no rule does, what the rules with from in their
// src let it send to. Any asks about TCP, UDP and ICMP at once: only a rule
// without proto accepts that. ICMP has no ports, so port means nothing to
// it.
func (p *Policy) Explain(from, to Node, proto filter.Proto, port uint16) Decision {
	f, t := newNode(from), newNode(to)
	for i := range p.rules {
		if d, ok := p.accepting(i, &f, &t, proto, port); ok {
			return d
		}
	}
	return Decision{Rule: -1, Reason: fmt.Sprintf("no rule accepts %s from %s to %s; %s",
		packet(proto, port), &f, &t, p.whatAllowed(&f, &t))}
}

// accepting is rule i's Decision if it accepts the packet.
func (p *Policy) accepting(i int, f, t *node, proto filter.Proto, port uint16) (Decision, bool) {
	r := &p.rules[i]
	src := r.srcMatch(f)
	if src == nil {
		return Decision{}, false
	}
	for j := range r.dst {
		d := &r.dst[j]
		if d.sel.matches(t) && acceptsAny(d.allows, proto, port) {
			why := fmt.Sprintf("acls[%d] (line %d) accepts %s from %s to %s: src %q matches %s, dst %q matches %s",
				i, r.line, packet(proto, port), f, t, src.text, f, d.text, t)
			return Decision{Accept: true, Rule: i, Line: r.line, Reason: why}, true
		}
	}
	return Decision{}, false
}

// whatAllowed says what the rules with f in their src let f send t.
func (p *Policy) whatAllowed(f, t *node) string {
	inSrc := 0
	var parts []string
	for i := range p.rules {
		r := &p.rules[i]
		if r.srcMatch(f) == nil {
			continue
		}
		inSrc++
		if allows := r.allowsTo(t); allows != nil {
			parts = append(parts, fmt.Sprintf("acls[%d] (line %d): %s", i, r.line, joinAllows(allows)))
		}
	}
	switch {
	case inSrc == 0:
		return fmt.Sprintf("no rule has %s in its src", f)
	case parts == nil:
		return fmt.Sprintf("the rules with %s in their src let it send %s nothing", f, t)
	}
	return fmt.Sprintf("what the rules let %s send %s: %s", f, t, strings.Join(parts, "; "))
}

func acceptsAny(allows []filter.Allow, proto filter.Proto, port uint16) bool {
	for _, a := range allows {
		if a.Accepts(proto, port) {
			return true
		}
	}
	return false
}

// packet names a kind of packet for a person: "tcp port 22", "icmp".
func packet(proto filter.Proto, port uint16) string {
	switch proto {
	case filter.ICMP:
		return "icmp"
	case filter.Any:
		return fmt.Sprintf("tcp, udp and icmp to port %d", port)
	case filter.TCP, filter.UDP:
		return fmt.Sprintf("%s port %d", proto, port)
	}
	return fmt.Sprintf("protocol %s port %d", proto, port)
}

func joinAllows(allows []filter.Allow) string {
	s := make([]string, len(allows))
	for i, a := range allows {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
