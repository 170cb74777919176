package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// selector is one entry of a rule's src, or a dst without its ports: it
// says which nodes it names.
type selector struct {
	text    string // as written
	kind    selKind
	name    string          // selName: lower case; selTag: the tag
	members map[string]bool // selGroup
	prefix  netip.Prefix    // selPrefix: an address, CIDR or host
}

type selKind uint8

const (
	selAll selKind = iota
	selName
	selGroup
	selTag
	selPrefix
)

// node is a Node made ready for matching: lower-case name and tags, IPv4
// address unmapped.
type node struct {
	name string
	ip   netip.Addr
	tags []string
}

func newNode(n Node) node {
	tags := make([]string, len(n.Tags))
	for i, t := range n.Tags {
		tags[i] = strings.ToLower(t)
	}
	return node{name: strings.ToLower(n.Name), ip: n.IP.Unmap(), tags: tags}
}

// String names the node for a person: its name, else its address, else
// its tags.
func (n *node) String() string {
	switch {
	case n.name != "":
		return n.name
	case n.ip.IsValid():
		return n.ip.String()
	case len(n.tags) > 0:
		return strings.Join(n.tags, ",")
	}
	return "a node without name"
}

func (s *selector) matches(n *node) bool {
	switch s.kind {
	case selAll:
		return true
	case selName:
		return n.name == s.name
	case selGroup:
		return n.name != "" && s.members[n.name]
	case selTag:
		return slices.Contains(n.tags, s.name)
	case selPrefix:
		return n.ip.IsValid() && s.prefix.Contains(n.ip)
	}
	return false
}

// selector reads s: *, group:NAME, tag:NAME, an IPv4 address or CIDR, a
// host, or a node name. A host takes the place of a node of its name.
func (p *Policy) selector(s string) (selector, error) {
	sel := selector{text: s}
	var err error
	switch {
	case s == "*":
		sel.kind = selAll
	case strings.HasPrefix(s, "group:"):
		sel.kind, sel.members, err = selGroup, p.groups[s], p.checkGroup(s)
	case strings.HasPrefix(s, "tag:"):
		sel.kind, sel.name, err = selTag, s, p.checkTag(s)
	case strings.Contains(s, ":"):
		err = unknownSelector(s)
	case strings.Contains(s, "/") || isAddr(s):
		sel.kind = selPrefix
		sel.prefix, err = parsePrefix(s)
	default:
		return p.named(sel)
	}
	return sel, err
}

// named is a host of sel's name if there is one, else a node name.
func (p *Policy) named(sel selector) (selector, error) {
	low := strings.ToLower(sel.text)
	if pfx, ok := p.hosts[low]; ok {
		sel.kind, sel.prefix = selPrefix, pfx
		return sel, nil
	}
	sel.kind, sel.name = selName, low
	return sel, checkName(sel.text)
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (p *Policy) checkTag(s string) error {
	if err := checkIdent(s, "tag:"); err != nil {
		return err
	}
	if !p.tags[s] {
		return fmt.Errorf("tag %q is not declared in tagOwners", s)
	}
	return nil
}

func unknownSelector(s string) error {
	switch low := strings.ToLower(s); {
	case strings.HasPrefix(low, "tag:"):
		return checkIdent(s, "tag:")
	case strings.HasPrefix(low, "group:"):
		return checkIdent(s, "group:")
	case strings.HasPrefix(s, "autogroup:"):
		return fmt.Errorf("%q: wire has no autogroups (nor users): name nodes, groups, tags, hosts or addresses", s)
	case isAddr(strings.Trim(s, "[]")) || strings.Contains(s, "/"):
		return fmt.Errorf("%q: wire's mesh is IPv4 only", s)
	}
	return fmt.Errorf("%q: want *, a node name, group:NAME, tag:NAME, a host, or an IPv4 address or CIDR", s)
}
