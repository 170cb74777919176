package policy

import (
	"fmt"
	"strings"

	"github.com/tailscale/hujson"
	"github.com/wire-mesh/wire/filter"
)

// rule is one of the acls: the nodes its src names may send the nodes of
// each of its dst entries what that entry allows.
type rule struct {
	line int
	src  []selector
	dst  []dst
}

// dst is one entry of a rule's dst, SELECTOR:PORTS, with the rule's proto.
type dst struct {
	text   string
	sel    selector
	allows []filter.Allow // merged
}

var ruleKeys = []string{"action", "src", "proto", "dst"}

// readACLs reads "acls", the rules.
func (p *Policy) readACLs(d *decoder, v *hujson.Value) error {
	elems, err := d.array(v, "acls")
	if err != nil {
		return err
	}
	p.rules = make([]rule, 0, len(elems))
	for i, e := range elems {
		r, err := p.readRule(d, e, fmt.Sprintf("acls[%d]", i))
		if err != nil {
			return err
		}
		p.rules = append(p.rules, r)
	}
	return nil
}

func (p *Policy) readRule(d *decoder, v *hujson.Value, what string) (rule, error) {
	f, err := d.fields(v, what, ruleKeys, "a rule has action, src, proto and dst")
	if err != nil {
		return rule{}, err
	}
	if err := d.checkAction(f["action"], v, what); err != nil {
		return rule{}, err
	}
	proto, err := d.proto(f["proto"], what)
	if err != nil {
		return rule{}, err
	}
	r := rule{line: d.line(v)}
	if r.src, err = p.readSrc(d, f, v, what); err != nil {
		return rule{}, err
	}
	r.dst, err = p.readDst(d, f, v, what, proto)
	return r, err
}

func (d *decoder) checkAction(v, rule *hujson.Value, what string) error {
	if v == nil {
		return d.errorf(rule, `%s: a rule needs "action": "accept"`, what)
	}
	s, err := d.str(v, what+": action")
	if err != nil {
		return err
	}
	if s != "accept" {
		return d.errorf(v, `%s: action %q: wire's policy denies everything it does not accept: the only action is "accept"`, what, s)
	}
	return nil
}

// proto reads a rule's or a test's proto: absent is filter.Any (TCP, UDP
// and ICMP).
func (d *decoder) proto(v *hujson.Value, what string) (filter.Proto, error) {
	if v == nil {
		return filter.Any, nil
	}
	s, err := d.str(v, what+": proto")
	if err != nil {
		return 0, err
	}
	proto, err := filter.ParseProto(s)
	if err != nil {
		return 0, d.errorf(v, "%s: %v", what, err)
	}
	return proto, nil
}

// required is f[key], or an error at obj if it is absent or an empty list.
func (d *decoder) required(f map[string]*hujson.Value, key string, obj *hujson.Value, what string) ([]item, error) {
	v := f[key]
	if v == nil {
		return nil, d.errorf(obj, "%s: %q is missing", what, key)
	}
	items, err := d.strList(v, what+": "+key)
	if err == nil && len(items) == 0 {
		err = d.errorf(v, "%s: %s is empty: the rule would accept nothing", what, key)
	}
	return items, err
}

func (p *Policy) readSrc(d *decoder, f map[string]*hujson.Value, rule *hujson.Value, what string) ([]selector, error) {
	items, err := d.required(f, "src", rule, what)
	if err != nil {
		return nil, err
	}
	out := make([]selector, len(items))
	for i, it := range items {
		if out[i], err = p.selector(it.s); err != nil {
			return nil, d.errorf(it.v, "%s: src: %v", what, err)
		}
	}
	return out, nil
}

func (p *Policy) readDst(d *decoder, f map[string]*hujson.Value, rule *hujson.Value, what string, proto filter.Proto) ([]dst, error) {
	items, err := d.required(f, "dst", rule, what)
	if err != nil {
		return nil, err
	}
	out := make([]dst, len(items))
	for i, it := range items {
		if out[i], err = p.dst(it.s, proto); err != nil {
			return nil, d.errorf(it.v, "%s: dst %q: %v", what, it.s, err)
		}
	}
	return out, nil
}

// dst reads SELECTOR:PORTS, split at the last colon. With proto icmp the
// ports must be *: ICMP has none, and a policy that seems to limit them
// (as Tailscale's accepts, and ignores) would mislead its reader.
func (p *Policy) dst(s string, proto filter.Proto) (dst, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return dst{}, fmt.Errorf("want SELECTOR:PORTS, as in n2:22, tag:web:80,443 or *:*")
	}
	sel, err := p.selector(s[:i])
	if err != nil {
		return dst{}, err
	}
	ports, err := parsePorts(s[i+1:])
	if err != nil {
		return dst{}, fmt.Errorf("%w (a dst is SELECTOR:PORTS, as in tag:web:80,443)", err)
	}
	if proto == filter.ICMP && !allPorts(ports) {
		return dst{}, fmt.Errorf("ICMP has no ports: write %q", s[:i]+":*")
	}
	allows := make([]filter.Allow, len(ports))
	for i, r := range ports {
		allows[i] = filter.Allow{Proto: proto, Ports: r}
	}
	return dst{text: s, sel: sel, allows: merge(allows)}, nil
}

// parsePorts reads a comma list of *, PORT and FIRST-LAST.
func parsePorts(s string) ([]filter.PortRange, error) {
	parts := strings.Split(s, ",")
	out := make([]filter.PortRange, len(parts))
	for i, part := range parts {
		r, err := filter.ParsePortRange(part)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func allPorts(rs []filter.PortRange) bool {
	for _, r := range rs {
		if r != filter.AllPorts {
			return false
		}
	}
	return true
}
