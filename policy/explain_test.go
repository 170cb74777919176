package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/filter"
)

const explainPolicy = `{
	"groups": {"group:admins": ["n1"]},
	"tagOwners": {"tag:web": []},
	"acls": [
		{"action": "accept", "src": ["n3"], "proto": "udp", "dst": ["*:53"]},
		{"action": "accept", "src": ["n2", "group:admins"], "proto": "tcp", "dst": ["n3:80", "tag:web:22,443"]},
		{"action": "accept", "src": ["group:admins"], "dst": ["tag:web:8000-8100"]},
		{"action": "accept", "src": ["n2"], "proto": "icmp", "dst": ["tag:web:*"]},
		{"action": "accept", "src": ["n2"], "proto": "47", "dst": ["n1:*"]},
	],
}`

func TestExplain(t *testing.T) {
	p := mustParse(t, explainPolicy)
	tests := []struct {
		name     string
		from, to Node
		proto    filter.Proto
		port     uint16
		want     Decision
	}{
		{"tcp", n1, web, filter.TCP, 443, Decision{true, 1, 6,
			`acls[1] (line 6) accepts tcp port 443 from n1 to web1: src "group:admins" matches n1, dst "tag:web:22,443" matches web1`}},
		{"udp by Any", n1, web, filter.UDP, 8080, Decision{true, 2, 7,
			`acls[2] (line 7) accepts udp port 8080 from n1 to web1: src "group:admins" matches n1, dst "tag:web:8000-8100" matches web1`}},
		{"icmp by Any", n1, web, filter.ICMP, 0, Decision{true, 2, 7,
			`acls[2] (line 7) accepts icmp from n1 to web1: src "group:admins" matches n1, dst "tag:web:8000-8100" matches web1`}},
		{"icmp ignores port", n2, web, filter.ICMP, 9, Decision{true, 3, 8,
			`acls[3] (line 8) accepts icmp from n2 to web1: src "n2" matches n2, dst "tag:web:*" matches web1`}},
		{"any by Any", n1, web, filter.Any, 8000, Decision{true, 2, 7,
			`acls[2] (line 7) accepts tcp, udp and icmp to port 8000 from n1 to web1: src "group:admins" matches n1, dst "tag:web:8000-8100" matches web1`}},
		{"other proto", n2, n1, 47, 0, Decision{true, 4, 9,
			`acls[4] (line 9) accepts protocol 47 port 0 from n2 to n1: src "n2" matches n2, dst "n1:*" matches n1`}},
		{"denied, what is allowed", n1, web, filter.TCP, 80, Decision{false, -1, 0,
			`no rule accepts tcp port 80 from n1 to web1; what the rules let n1 send web1: acls[1] (line 6): tcp:22, tcp:443; acls[2] (line 7): *:8000-8100`}},
		{"denied, any is not tcp", n1, n3, filter.Any, 80, Decision{false, -1, 0,
			`no rule accepts tcp, udp and icmp to port 80 from n1 to n3; what the rules let n1 send n3: acls[1] (line 6): tcp:80`}},
		{"denied, nothing to it", n2, db, filter.UDP, 80, Decision{false, -1, 0,
			`no rule accepts udp port 80 from n2 to db; the rules with n2 in their src let it send db nothing`}},
		{"denied, not in src", web, n1, filter.TCP, 22, Decision{false, -1, 0,
			`no rule accepts tcp port 22 from web1 to n1; no rule has web1 in its src`}},
		{"denied, icmp", n3, n1, filter.ICMP, 0, Decision{false, -1, 0,
			`no rule accepts icmp from n3 to n1; what the rules let n3 send n1: acls[0] (line 5): udp:53`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Explain(tt.from, tt.to, tt.proto, tt.port)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Explain (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExplainAgreesWithAllowed checks Explain against Allowed for every
// pair of a few nodes and some packets.
func TestExplainAgreesWithAllowed(t *testing.T) {
	p := mustParse(t, explainPolicy)
	nodes := []Node{n1, n2, n3, web, dns, db}
	protos := []filter.Proto{filter.Any, filter.ICMP, filter.TCP, filter.UDP, 47}
	for _, from := range nodes {
		for _, to := range nodes {
			allowed := p.Allowed(p.Match(from), p.Match(to))
			for _, proto := range protos {
				for _, port := range []uint16{0, 22, 53, 80, 443, 8000, 8100, 8101} {
					checkExplain(t, p, from, to, proto, port, allowed)
				}
			}
		}
	}
}

func checkExplain(t *testing.T, p *Policy, from, to Node, proto filter.Proto, port uint16, allowed []filter.Allow) {
	t.Helper()
	d := p.Explain(from, to, proto, port)
	if want := reference(allowed, proto, port); d.Accept != want {
		t.Errorf("Explain(%s, %s, %v, %d) = %+v; Allowed = %v", from.Name, to.Name, proto, port, d, allowed)
	}
	if d.Accept != (d.Rule >= 0) || d.Accept != (d.Line > 0) || d.Reason == "" {
		t.Errorf("Explain(%s, %s, %v, %d) = %+v: inconsistent", from.Name, to.Name, proto, port, d)
	}
}

// reference is whether allowed lets a packet through, as the filter
// package documents it: Any is TCP, UDP and ICMP, ICMP has no ports, and a
// question about Any needs an Allow of Any.
func reference(allowed []filter.Allow, proto filter.Proto, port uint16) bool {
	for _, a := range allowed {
		protoOK := a.Proto == proto || a.Proto == filter.Any && (proto == filter.TCP || proto == filter.UDP || proto == filter.ICMP)
		if protoOK && (proto == filter.ICMP || a.Ports.Contains(port)) {
			return true
		}
	}
	return false
}

func TestPolicyTestsPass(t *testing.T) {
	src := strings.TrimSuffix(explainPolicy, "],\n}") + `],
	"hosts": {"h1": "10.99.0.1"},
	"tests": [
		{"src": "N1", "accept": ["tag:web:22", "tag:web:8050"], "deny": ["tag:web:80", "n3:22"]},
		{"src": "n2", "proto": "icmp", "accept": ["tag:web:*"], "deny": ["n1:*", "n3:0"]},
		{"src": "n3", "proto": "udp", "accept": ["n1:53", "10.99.0.9:53", "h1:53"], "deny": ["n1:54"]},
		{"src": "tag:web", "deny": ["n1:22"]},
		{"src": "10.99.0.1", "deny": ["tag:web:22"]}, // an address alone is no member of group:admins
	],
}`
	mustParse(t, src)
}
