package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/filter"
)

// FuzzParse checks that Parse never panics, that its errors are *Error
// inside the text, and that an accepted policy's Source is its input.
// Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			checkError(t, b, err)
			return
		}
		if !bytes.Equal(p.Source(), b) {
			t.Fatalf("Source() = %q, want the input %q", p.Source(), b)
		}
		m1, m2 := p.Match(n1), p.Match(dns)
		p.Allowed(m1, m2)
		p.Visible(m1, m2)
		p.Explain(n1, dns, filter.TCP, 22)
	})
}

func checkError(t *testing.T, b []byte, err error) {
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse: %v (%T), want an *Error", err, err)
	}
	lines := bytes.Count(b, []byte("\n")) + 1
	if e.Line < 1 || e.Line > lines || e.Column < 1 || e.Msg == "" {
		t.Fatalf("Parse: %v: not a place in %d lines", err, lines)
	}
}

// FuzzEvaluate builds a small policy, two nodes and a packet from the fuzz
// bytes, and checks that Explain, Allowed and Visible agree. Seeds:
// testdata/fuzz/FuzzEvaluate.
func FuzzEvaluate(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newEvalCase(&fuzzBytes{b})
		p, err := Parse([]byte(c.policy))
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, c.policy)
		}
		checkEval(t, p, c)
	})
}

func checkEval(t *testing.T, p *Policy, c evalCase) {
	mf, mt := p.Match(c.from), p.Match(c.to)
	allowed, back := p.Allowed(mf, mt), p.Allowed(mt, mf)
	d := p.Explain(c.from, c.to, c.proto, c.port)
	if want := reference(allowed, c.proto, c.port); d.Accept != want {
		t.Fatalf("Explain(%v, %v, %v, %d) = %+v, but Allowed = %v\n%s", c.from, c.to, c.proto, c.port, d, allowed, c.policy)
	}
	if got, want := p.Visible(mf, mt), allowed != nil || back != nil; got != want {
		t.Fatalf("Visible = %v, but Allowed = %v and back %v\n%s", got, allowed, back, c.policy)
	}
	if diff := cmp.Diff(allowed, merge(slices.Clone(allowed))); diff != "" {
		t.Fatalf("Allowed = %v is not merged (-got +merged):\n%s\n%s", allowed, diff, c.policy)
	}
}

// fuzzBytes hands out small numbers from fuzz bytes, then zeros.
type fuzzBytes struct{ b []byte }

func (r *fuzzBytes) next(n int) int {
	if len(r.b) == 0 {
		return 0
	}
	v := int(r.b[0]) % n
	r.b = r.b[1:]
	return v
}

func (r *fuzzBytes) pick(from []string) string { return from[r.next(len(from))] }

type evalCase struct {
	policy   string
	from, to Node
	proto    filter.Proto
	port     uint16
}

var (
	fuzzSelectors = []string{"*", "n0", "N1", "n2", "n3", "group:g", "tag:a", "tag:b", "h0", "h1",
		"10.99.0.2", "10.99.0.0/31", "10.99.0.4/30", "nobody"}
	fuzzPorts  = []string{"*", "22", "20-30", "22,80", "0", "65535", "1-65535", "80-443", "21,23-24"}
	fuzzProtos = []string{"", "tcp", "udp", "icmp", "47"}
	fuzzAsked  = []filter.Proto{filter.Any, filter.ICMP, filter.TCP, filter.UDP, 47}
	fuzzAt     = []uint16{0, 21, 22, 25, 30, 80, 443, 65535}
)

func newEvalCase(r *fuzzBytes) evalCase {
	nodes := make([]Node, 4)
	for i := range nodes {
		nodes[i] = fuzzNode(r, i)
	}
	var c evalCase
	c.policy = fuzzPolicy(r)
	c.from, c.to = nodes[r.next(4)], nodes[r.next(4)]
	c.proto, c.port = fuzzAsked[r.next(len(fuzzAsked))], fuzzAt[r.next(len(fuzzAt))]
	return c
}

func fuzzNode(r *fuzzBytes, i int) Node {
	n := Node{Name: fmt.Sprintf("n%d", i), IP: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)})}
	bits := r.next(8)
	if bits&1 != 0 {
		n.Tags = append(n.Tags, "tag:a")
	}
	if bits&2 != 0 {
		n.Tags = append(n.Tags, "TAG:B")
	}
	if bits&4 != 0 {
		n.Name = strings.ToUpper(n.Name)
	}
	return n
}

func fuzzPolicy(r *fuzzBytes) string {
	var members []string
	for i, bits := 0, r.next(16); i < 4; i++ {
		if bits&(1<<i) != 0 {
			members = append(members, fmt.Sprintf("%q", fmt.Sprintf("n%d", i)))
		}
	}
	var rules []string
	for range 1 + r.next(4) {
		rules = append(rules, fuzzRule(r))
	}
	return fmt.Sprintf(`{
	"groups": {"group:g": [%s]},
	"tagOwners": {"tag:a": [], "tag:b": ["group:g"]},
	"hosts": {"h0": "10.99.0.%d", "h1": "10.99.0.0/%d"},
	"acls": [
		%s,
	],
}`, strings.Join(members, ", "), 1+r.next(5), 29+r.next(4), strings.Join(rules, ",\n\t\t"))
}

func fuzzRule(r *fuzzBytes) string {
	proto := r.pick(fuzzProtos)
	src := []string{r.pick(fuzzSelectors)}
	if r.next(2) == 1 {
		src = append(src, r.pick(fuzzSelectors))
	}
	var dst []string
	for range 1 + r.next(3) {
		ports := r.pick(fuzzPorts)
		if proto == "icmp" {
			ports = "*"
		}
		dst = append(dst, r.pick(fuzzSelectors)+":"+ports)
	}
	rule := fmt.Sprintf(`{"action": "accept", "src": %s, "dst": %s`, jsonList(src), jsonList(dst))
	if proto != "" {
		rule += fmt.Sprintf(`, "proto": %q`, proto)
	}
	return rule + "}"
}

func jsonList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
