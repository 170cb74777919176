package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tailscale/hujson"
)

// readGroups reads "groups": group:NAME to a list of node names.
func (p *Policy) readGroups(d *decoder, v *hujson.Value) error {
	ms, err := d.object(v, "groups")
	if err != nil {
		return err
	}
	p.groups = make(map[string]map[string]bool, len(ms))
	for _, m := range ms {
		if err := checkIdent(m.name, "group:"); err != nil {
			return d.errorf(m.key, "groups: %v", err)
		}
		members, err := d.groupMembers(m)
		if err != nil {
			return err
		}
		p.groups[m.name] = members
	}
	return nil
}

func (d *decoder) groupMembers(m member) (map[string]bool, error) {
	items, err := d.strList(m.value, m.name)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(items))
	for _, it := range items {
		if err := checkMember(it.s); err != nil {
			return nil, d.errorf(it.v, "%s: %v", m.name, err)
		}
		set[strings.ToLower(it.s)] = true
	}
	return set, nil
}

// checkMember says whether s may be in a group: only node names may.
func checkMember(s string) error {
	switch {
	case strings.HasPrefix(s, "group:"):
		return fmt.Errorf("%q: groups must not contain groups", s)
	case strings.HasPrefix(s, "tag:"):
		return fmt.Errorf("%q: a group's members are node names, not tags", s)
	}
	return checkName(s)
}

// readTagOwners reads "tagOwners", which declares the tags. Their owners
// (node names or groups) say nothing in wire, where the admin assigns
// tags, but must make sense.
func (p *Policy) readTagOwners(d *decoder, v *hujson.Value) error {
	ms, err := d.object(v, "tagOwners")
	if err != nil {
		return err
	}
	p.tags = make(map[string]bool, len(ms))
	for _, m := range ms {
		if err := checkIdent(m.name, "tag:"); err != nil {
			return d.errorf(m.key, "tagOwners: %v", err)
		}
		if err := p.checkOwners(d, m); err != nil {
			return err
		}
		p.tags[m.name] = true
	}
	return nil
}

func (p *Policy) checkOwners(d *decoder, m member) error {
	owners, err := d.strList(m.value, m.name)
	if err != nil {
		return err
	}
	for _, o := range owners {
		if err := p.checkOwner(o.s); err != nil {
			return d.errorf(o.v, "tagOwners: %s: %v", m.name, err)
		}
	}
	return nil
}

func (p *Policy) checkOwner(s string) error {
	if strings.HasPrefix(s, "group:") {
		return p.checkGroup(s)
	}
	if err := checkName(s); err != nil {
		return fmt.Errorf("%w (a tag's owners are node names or groups)", err)
	}
	return nil
}

func (p *Policy) checkGroup(s string) error {
	if err := checkIdent(s, "group:"); err != nil {
		return err
	}
	if p.groups[s] == nil {
		return fmt.Errorf("group %q is not defined", s)
	}
	return nil
}

// readHosts reads "hosts": names for an IPv4 address or CIDR.
func (p *Policy) readHosts(d *decoder, v *hujson.Value) error {
	ms, err := d.object(v, "hosts")
	if err != nil {
		return err
	}
	p.hosts = make(map[string]netip.Prefix, len(ms))
	for _, m := range ms {
		if err := checkHostName(m.name); err != nil {
			return d.errorf(m.key, "hosts: %v", err)
		}
		s, err := d.str(m.value, m.name)
		if err != nil {
			return err
		}
		pfx, err := parsePrefix(s)
		if err != nil {
			return d.errorf(m.value, "hosts: %s: %v", m.name, err)
		}
		p.hosts[strings.ToLower(m.name)] = pfx
	}
	return nil
}

func checkHostName(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("host name %q is an address: name it with letters", s)
	}
	if err := checkName(s); err != nil {
		return fmt.Errorf("host %w", err)
	}
	return nil
}

// parsePrefix reads an IPv4 address (as a /32) or CIDR.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 address or CIDR (wire's mesh is IPv4)", s)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	pfx, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !pfx.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 address or CIDR (wire's mesh is IPv4)", s)
	case pfx != pfx.Masked():
		return netip.Prefix{}, fmt.Errorf("CIDR %q has bits set past its /%d: did you mean %s?", s, pfx.Bits(), pfx.Masked())
	}
	return pfx, nil
}

// checkName says whether s is a node name: letters, digits, '-', '_' and '.'.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("a name must not be empty")
	}
	for _, c := range s {
		if !isNameChar(c) {
			return fmt.Errorf("name %q: node names are letters, digits, '-', '_' and '.' (wire has no users)", s)
		}
	}
	return nil
}

func isNameChar(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// checkIdent says whether s is prefix (tag: or group:) and a name of
// lower-case letters, digits and dashes that starts with a letter.
func checkIdent(s, prefix string) error {
	name, ok := strings.CutPrefix(s, prefix)
	if !ok || !isIdent(name) {
		return fmt.Errorf("%q: want %sNAME, NAME being lower-case letters, digits and '-', starting with a letter", s, prefix)
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
