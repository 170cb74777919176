package policy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
	"github.com/wire-mesh/wire/filter"
)

var testKeys = []string{"src", "proto", "accept", "deny"}

// runTests checks "tests": each names a node (src) and the NODE:PORT its
// packets must be accepted to, or denied. As in Tailscale's tests, the
// packets are TCP unless the test says a proto; with icmp, the port may
// be *.
//
// Parse knows no nodes, so a test's nodes are what their names say and no
// more: n1 is a node named n1 with no address or tags, tag:ci a node with
// that tag alone, 10.99.0.5 (or a host of one address) a node with that
// address alone.
func (p *Policy) runTests(d *decoder, v *hujson.Value) error {
	elems, err := d.array(v, "tests")
	if err != nil {
		return err
	}
	for i, e := range elems {
		if err := p.runTest(d, e, fmt.Sprintf("tests[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) runTest(d *decoder, v *hujson.Value, what string) error {
	f, err := d.fields(v, what, testKeys, "a test has src, proto, accept and deny")
	if err != nil {
		return err
	}
	from, err := p.testSrc(d, f["src"], v, what)
	if err != nil {
		return err
	}
	proto := filter.TCP
	if f["proto"] != nil {
		if proto, err = d.proto(f["proto"], what); err != nil {
			return err
		}
	}
	if f["accept"] == nil && f["deny"] == nil {
		return d.errorf(v, "%s: a test needs accept or deny (or both)", what)
	}
	if err := p.testCases(d, f["accept"], what, from, proto, true); err != nil {
		return err
	}
	return p.testCases(d, f["deny"], what, from, proto, false)
}

func (p *Policy) testSrc(d *decoder, v, test *hujson.Value, what string) (Node, error) {
	if v == nil {
		return Node{}, d.errorf(test, "%s: a test needs src", what)
	}
	s, err := d.str(v, what+": src")
	if err != nil {
		return Node{}, err
	}
	n, err := p.testNode(s)
	if err != nil {
		return Node{}, d.errorf(v, "%s: src: %v", what, err)
	}
	return n, nil
}

// testCases checks that each of v's NODE:PORT is accepted from from, or
// denied.
func (p *Policy) testCases(d *decoder, v *hujson.Value, what string, from Node, proto filter.Proto, accept bool) error {
	if v == nil {
		return nil
	}
	key, want := "deny", "denied"
	if accept {
		key, want = "accept", "accepted"
	}
	items, err := d.strList(v, what+": "+key)
	if err != nil {
		return err
	}
	for _, it := range items {
		to, port, err := p.testDst(it.s, proto)
		if err != nil {
			return d.errorf(it.v, "%s: %s %q: %v", what, key, it.s, err)
		}
		if dec := p.Explain(from, to, proto, port); dec.Accept != accept {
			return d.errorf(it.v, "%s failed: %q should be %s, but %s", what, it.s, want, dec.Reason)
		}
	}
	return nil
}

// testNode is the node a test names.
func (p *Policy) testNode(s string) (Node, error) {
	sel, err := p.selector(s)
	if err != nil {
		return Node{}, err
	}
	switch {
	case sel.kind == selName:
		return Node{Name: s}, nil
	case sel.kind == selTag:
		return Node{Tags: []string{s}}, nil
	case sel.kind == selPrefix && sel.prefix.IsSingleIP():
		return Node{IP: sel.prefix.Addr()}, nil
	}
	return Node{}, fmt.Errorf("%q: a test names one node: a node name, tag:NAME, an IPv4 address or a host of one", s)
}

// testDst reads a test's NODE:PORT.
func (p *Policy) testDst(s string, proto filter.Proto) (Node, uint16, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Node{}, 0, fmt.Errorf("want NODE:PORT, as in n2:22")
	}
	n, err := p.testNode(s[:i])
	if err != nil {
		return Node{}, 0, err
	}
	if proto == filter.ICMP && s[i+1:] == "*" {
		return n, 0, nil
	}
	port, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return Node{}, 0, fmt.Errorf("port %q: want one port from 0 to 65535", s[i+1:])
	}
	return n, uint16(port), nil
}
