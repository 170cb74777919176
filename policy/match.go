package policy

import "github.com/wire-mesh/wire/filter"

// Match is what a node satisfies in a policy's rules: in which rules' src
// it is, and what each rule lets be sent to it. Compute it once per node
// with Policy.Match; the zero Match, and a Match of another Policy,
// match nothing.
type Match struct {
	p   *Policy
	src []uint64    // bit i: the node is in rule i's src
	dst []ruleAllow // by rule, the rules whose dst names the node
}

// ruleAllow is what one rule lets be sent to a node.
type ruleAllow struct {
	rule   int
	allows []filter.Allow // merged
}

// Match is what n satisfies in p's rules.
func (p *Policy) Match(n Node) Match {
	nn := newNode(n)
	m := Match{p: p, src: make([]uint64, (len(p.rules)+63)/64)}
	for i := range p.rules {
		r := &p.rules[i]
		if r.srcMatch(&nn) != nil {
			m.src[i/64] |= 1 << (i % 64)
		}
		if allows := r.allowsTo(&nn); allows != nil {
			m.dst = append(m.dst, ruleAllow{i, allows})
		}
	}
	return m
}

// srcMatch is the first of r's src entries that names n, nil if none.
func (r *rule) srcMatch(n *node) *selector {
	for i := range r.src {
		if r.src[i].matches(n) {
			return &r.src[i]
		}
	}
	return nil
}

// allowsTo is what r lets be sent to n, merged; nil if nothing.
func (r *rule) allowsTo(n *node) []filter.Allow {
	var out []filter.Allow
	matched := 0
	for i := range r.dst {
		if r.dst[i].sel.matches(n) {
			out = append(out, r.dst[i].allows...)
			matched++
		}
	}
	if matched > 1 {
		return merge(out)
	}
	return out
}

func (m *Match) inSrc(rule int) bool {
	i := rule / 64
	return i < len(m.src) && m.src[i]&(1<<(rule%64)) != 0
}

// of says whether m is of p; another's rules are not p's.
func (m *Match) of(p *Policy) bool { return m.p == p }

// Allowed is what a node matching from may send a node matching to:
// sorted, merged and without duplicates, as merge makes them. Nil if
// nothing. It costs as many steps as to has rules naming it in their dst.
func (p *Policy) Allowed(from, to Match) []filter.Allow {
	if !from.of(p) || !to.of(p) {
		return nil
	}
	var out []filter.Allow
	for _, d := range to.dst {
		if from.inSrc(d.rule) {
			out = append(out, d.allows...)
		}
	}
	return merge(out)
}

// Visible says whether nodes matching a and b may exchange any traffic,
// in either direction: then each is the other's peer.
func (p *Policy) Visible(a, b Match) bool {
	return p.sends(a, b) || p.sends(b, a)
}

func (p *Policy) sends(from, to Match) bool {
	if !from.of(p) || !to.of(p) {
		return false
	}
	for _, d := range to.dst {
		if from.inSrc(d.rule) {
			return true
		}
	}
	return false
}
