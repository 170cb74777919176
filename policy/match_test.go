package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/filter"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func newTestNode(name, ip string, tags ...string) Node {
	return Node{Name: name, IP: netip.MustParseAddr(ip), Tags: tags}
}

var (
	n1     = newTestNode("n1", "10.99.0.1")
	n2     = newTestNode("n2", "10.99.0.2")
	n3     = newTestNode("n3", "10.99.0.3")
	laptop = newTestNode("Laptop", "10.99.1.7")
	web    = newTestNode("web1", "10.99.0.10", "tag:web")
	dns    = newTestNode("dns1", "10.99.0.11", "TAG:DNS", "tag:web")
	db     = newTestNode("db", "10.99.0.5")
)

// labPolicy is the lab's example: n1 may reach n2 on port 22, and nothing
// else is allowed.
const labPolicy = `{"acls": [{"action": "accept", "src": ["n1"], "dst": ["n2:22"]}]}`

func TestLab(t *testing.T) {
	p := mustParse(t, labPolicy)
	m1, m2, m3 := p.Match(n1), p.Match(n2), p.Match(n3)
	if diff := cmp.Diff(allows(t, "*:22"), p.Allowed(m1, m2)); diff != "" {
		t.Errorf("Allowed(n1, n2) (-want +got):\n%s", diff)
	}
	if got := p.Allowed(m2, m1); got != nil {
		t.Errorf("Allowed(n2, n1) = %v, want nothing", got)
	}
	if !p.Visible(m1, m2) || !p.Visible(m2, m1) {
		t.Error("n1 and n2 do not see each other")
	}
	if p.Visible(m1, m3) || p.Visible(m3, m2) {
		t.Error("n3 sees n1 or n2")
	}
}

const matchPolicy = `{
	"groups": {"group:admins": ["N1", "laptop"]},
	"tagOwners": {"tag:web": [], "tag:dns": []},
	"hosts": {"db": "10.99.0.5", "office": "10.99.1.0/24"},
	"acls": [
		{"action": "accept", "src": ["group:admins"], "dst": ["tag:web:22", "db:5432,6432"]},
		{"action": "accept", "src": ["office"], "dst": ["tag:web:80,443", "10.99.0.0/28:8080"]},
		{"action": "accept", "src": ["*"], "proto": "udp", "dst": ["tag:dns:53"]},
		{"action": "accept", "src": ["tag:web"], "proto": "tcp", "dst": ["DB:5432", "10.99.0.5:5433"]},
		{"action": "accept", "src": ["10.99.0.1"], "proto": "icmp", "dst": ["*:*"]},
		{"action": "accept", "src": ["n2"], "dst": ["n3:23", "n3:22"]},
	],
}`

func TestAllowed(t *testing.T) {
	p := mustParse(t, matchPolicy)
	tests := []struct {
		name     string
		from, to Node
		want     []string
	}{
		{"group to tag, icmp in Any", n1, web, []string{"*:22"}},
		{"group to host, cidr", laptop, db, []string{"*:5432", "*:6432", "*:8080"}},
		{"name case", newTestNode("LAPTOP", "10.99.2.7"), db, []string{"*:5432", "*:6432"}},
		{"cidr src and dst", laptop, web, []string{"*:22", "*:80", "*:443", "*:8080"}},
		{"tag case", n3, dns, []string{"udp:53"}},
		{"tag to host", web, db, []string{"tcp:5432-5433"}},
		{"host by address, not name", web, newTestNode("db", "10.99.0.99"), nil},
		{"icmp from address", n1, n3, []string{"icmp"}},
		{"dst entries merged", n2, n3, []string{"*:22-23"}},
		{"nothing back", db, n1, nil},
		{"no address", Node{Name: "n1"}, Node{Tags: []string{"tag:web"}}, []string{"*:22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Allowed(p.Match(tt.from), p.Match(tt.to))
			if diff := cmp.Diff(allows(t, tt.want...), got); diff != "" {
				t.Errorf("Allowed(%s, %s) (-want +got):\n%s", tt.from.Name, tt.to.Name, diff)
			}
		})
	}
}

func TestVisible(t *testing.T) {
	p := mustParse(t, matchPolicy)
	tests := []struct {
		a, b Node
		want bool
	}{
		{n1, web, true},
		{web, n1, true}, // either way
		{db, n2, false},
		{n3, dns, true},
		{n3, n1, true}, // n1 may ping n3
		{n3, newTestNode("x", "10.99.9.9"), false},
	}
	for _, tt := range tests {
		if got := p.Visible(p.Match(tt.a), p.Match(tt.b)); got != tt.want {
			t.Errorf("Visible(%s, %s) = %v, want %v", tt.a.Name, tt.b.Name, got, tt.want)
		}
	}
}

func TestEmptyPolicy(t *testing.T) {
	for _, src := range []string{"", "{}", `{"acls": []}`} {
		p := mustParse(t, src)
		if got := p.Allowed(p.Match(n1), p.Match(n2)); got != nil || p.Visible(p.Match(n1), p.Match(n2)) {
			t.Errorf("policy %q: Allowed(n1, n2) = %v, want nothing and not visible", src, got)
		}
	}
}

func TestMatchOfAnotherPolicy(t *testing.T) {
	p, q := mustParse(t, labPolicy), mustParse(t, labPolicy)
	if got := p.Allowed(q.Match(n1), p.Match(n2)); got != nil {
		t.Errorf("Allowed with another policy's Match = %v, want nothing", got)
	}
	if p.Visible(p.Match(n1), Match{}) {
		t.Error("the zero Match is visible")
	}
}

func TestAllowedIsCopy(t *testing.T) {
	p := mustParse(t, labPolicy)
	m1, m2 := p.Match(n1), p.Match(n2)
	p.Allowed(m1, m2)[0] = filter.Allow{Proto: filter.UDP, Ports: filter.AllPorts}
	if diff := cmp.Diff(allows(t, "*:22"), p.Allowed(m1, m2)); diff != "" {
		t.Errorf("Allowed after changing an earlier answer (-want +got):\n%s", diff)
	}
}

// BenchmarkAllowed is the server's cost per pair of nodes, with a policy
// of 200 rules.
func BenchmarkAllowed(b *testing.B) {
	var rules []string
	for i := range 200 {
		rules = append(rules, fmt.Sprintf(`{"action": "accept", "src": ["n%d", "group:g"], "dst": ["n%d:%d", "tag:web:80"]}`, i, i+1, 1000+i))
	}
	p := mustParse(b, fmt.Sprintf(`{"groups": {"group:g": ["n1"]}, "tagOwners": {"tag:web": []}, "acls": [%s]}`, strings.Join(rules, ",")))
	from, to := p.Match(n1), p.Match(n2)
	b.ReportAllocs()
	for b.Loop() {
		p.Allowed(from, to)
		p.Visible(from, to)
	}
}
