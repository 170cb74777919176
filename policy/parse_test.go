package policy

import (
	"errors"
	"strings"
	"testing"
)

// full uses every section wire reads, with comments and trailing commas.
const full = `{
	// who administers
	"groups": {"group:admins": ["n1", "Laptop"],},
	"tagOwners": {"tag:server": ["group:admins"], "tag:dns": [], "tag:ci": ["n9"]},
	"hosts": {"db": "10.99.0.5", "office": "10.99.1.0/24"},
	"acls": [
		{"action": "accept", "src": ["group:admins"], "dst": ["tag:server:22", "db:5432,6432", "n3:1000-2000"]},
		{"action": "accept", "src": ["*"], "proto": "udp", "dst": ["tag:dns:53"]},
		{"action": "accept", "src": ["office", "10.99.2.7", "10.99.3.0/24"], "proto": "icmp", "dst": ["*:*"]},
		/* Tailscale's spelling of keys is read too */
		{"Action": "accept", "Src": ["tag:ci"], "Proto": "47", "Dst": ["n3:*"]},
	],
	"tests": [
		{"src": "n1", "accept": ["tag:server:22", "db:6432"], "deny": ["tag:server:80", "db:22"]},
		{"src": "laptop", "proto": "udp", "accept": ["tag:dns:53"]},
		{"src": "10.99.1.9", "proto": "icmp", "accept": ["n3:*"], "deny": []},
	],
}`

func TestParseGood(t *testing.T) {
	for _, src := range []string{
		"", "   \n", "// nothing yet\n", "/* nothing */", "// no newline", "{}", "{} // trailing",
		`{"acls": []}`, `{"groups": {"group:empty": []}}`, full,
	} {
		p, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if got := string(p.Source()); got != src {
			t.Errorf("Parse(%q).Source() = %q", src, got)
		}
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name, src string
		line, col int
		msg       string
	}{
		{"syntax", "{\n  \"acls\": [\n    {\"action\": \"accept\",,}\n  ]\n}", 3, 25, `syntax error: invalid character ','`},
		{"unterminated", "{\n  \"acls\": [", 2, 12, "syntax error"},
		{"not object", "[]", 1, 1, "the policy must be an object"},
		{"grants", "{\n  \"grants\": []\n}", 2, 3, `"grants" is not supported: wire's policy has groups, tagOwners, hosts, acls and tests`},
		{"ssh", `{"ssh": []}`, 1, 2, `"ssh" is not supported`},
		{"duplicate top", "{\"acls\": [],\n \"acls\": []}", 2, 2, `"acls" is given twice (first on line 1)`},
		{"duplicate folded", "{\"hosts\": {\"db\": \"10.99.0.1\", \"DB\": \"10.99.0.2\"}}", 1, 31, `"DB" is given twice`},
		{"rule key", "{\"acls\": [\n {\"action\": \"accept\", \"users\": [\"*\"], \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 2, 23, `acls[0]: "users" is not supported: a rule has action, src, proto and dst`},
		{"test key", `{"tests": [{"src": "n1", "allow": ["n2:22"]}]}`, 1, 26, `tests[0]: "allow" is not supported`},
		{"deny action", "{\"acls\": [\n\n {\"action\": \"deny\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 3, 13, `the only action is "accept"`},
		{"no action", "{\"acls\": [\n {\"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 2, 2, `a rule needs "action": "accept"`},
		{"no src", `{"acls": [{"action": "accept", "dst": ["*:*"]}]}`, 1, 11, `acls[0]: "src" is missing`},
		{"empty dst", `{"acls": [{"action": "accept", "src": ["*"], "dst": []}]}`, 1, 53, "dst is empty"},
		{"undefined group", "{\"acls\": [{\"action\": \"accept\",\n  \"src\": [\"group:ops\"], \"dst\": [\"*:*\"]}]}", 2, 11, `group "group:ops" is not defined`},
		{"undeclared tag", "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n\"dst\": [\"tag:web:80\"]}]}", 2, 9, `tag "tag:web" is not declared in tagOwners`},
		{"nested group", "{\"groups\": {\n\"group:a\": [\"n1\"],\n\"group:b\": [\"group:a\"]}}", 3, 13, "groups must not contain groups"},
		{"tag in group", `{"groups": {"group:a": ["tag:x"]}}`, 1, 25, "members are node names, not tags"},
		{"group syntax", `{"groups": {"group:Ops": []}}`, 1, 13, "lower-case letters"},
		{"tag syntax", `{"tagOwners": {"tag:1x": []}}`, 1, 16, `"tag:1x": want tag:NAME`},
		{"tag case in src", `{"tagOwners": {"tag:x": []}, "acls": [{"action": "accept", "src": ["Tag:x"], "dst": ["*:*"]}]}`, 1, 68, "want tag:NAME"},
		{"owner group undefined", `{"tagOwners": {"tag:x": ["group:ops"]}}`, 1, 26, `tagOwners: tag:x: group "group:ops" is not defined`},
		{"owner email", `{"tagOwners": {"tag:x": ["alice@example.com"]}}`, 1, 26, "node names are letters, digits"},
		{"user as src", `{"acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["*:*"]}]}`, 1, 40, `"alice@example.com": node names are letters`},
		{"autogroup", `{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["*:*"]}]}`, 1, 40, "wire has no autogroups"},
		{"ipv6", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["[fd00::1]:22"]}]}`, 1, 54, "IPv4 only"},
		{"host is ipv6", `{"hosts": {"v6": "fd00::1"}}`, 1, 18, "want an IPv4 address or CIDR"},
		{"host bits", `{"hosts": {"net": "10.99.1.5/24"}}`, 1, 19, "did you mean 10.99.1.0/24?"},
		{"host named like address", `{"hosts": {"10.1.1.1": "10.99.0.1"}}`, 1, 12, "is an address"},
		{"no ports", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["n2"]}]}`, 1, 54, "want SELECTOR:PORTS"},
		{"bad port", "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n\n\n \"dst\": [\"n2:22,70000\"]}]}", 4, 10, `port "70000"`},
		{"ports backwards", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["n2:30-20"]}]}`, 1, 54, "the first is above the last"},
		{"icmp ports", `{"acls": [{"action": "accept", "src": ["*"], "proto": "icmp", "dst": ["n2:22"]}]}`, 1, 71, `ICMP has no ports: write "n2:*"`},
		{"bad proto", `{"acls": [{"action": "accept", "src": ["*"], "proto": "sctpx", "dst": ["n2:*"]}]}`, 1, 55, `protocol "sctpx"`},
		{"proto number", `{"acls": [{"action": "accept", "src": ["*"], "proto": 6, "dst": ["n2:*"]}]}`, 1, 55, "proto must be a string, not a number"},
		{"src not list", `{"acls": [{"action": "accept", "src": "*", "dst": ["n2:*"]}]}`, 1, 39, "src must be a list"},
		{"failing accept", "{\"acls\": [{\"action\": \"accept\", \"src\": [\"n1\"], \"dst\": [\"n2:22\"]}],\n\"tests\": [\n  {\"src\": \"n1\", \"accept\": [\"n2:22\", \"n2:80\"]}]}", 3, 37,
			`tests[0] failed: "n2:80" should be accepted, but no rule accepts tcp port 80 from n1 to n2; what the rules let n1 send n2: acls[0] (line 1): *:22`},
		{"failing deny", "{\"acls\": [\n{\"action\": \"accept\", \"src\": [\"n1\"], \"dst\": [\"n2:22\"]}],\n\"tests\": [{\"src\": \"N1\", \"deny\": [\"n2:22\"]}]}", 3, 34,
			`tests[0] failed: "n2:22" should be denied, but acls[0] (line 2) accepts tcp port 22 from n1 to n2: src "n1" matches n1, dst "n2:22" matches n2`},
		{"test src group", `{"groups": {"group:a": []}, "tests": [{"src": "group:a", "accept": ["n2:22"]}]}`, 1, 47, "a test names one node"},
		{"test no cases", `{"tests": [{"src": "n1"}]}`, 1, 12, "a test needs accept or deny"},
		{"test port range", `{"tests": [{"src": "n1", "deny": ["n2:20-30"]}]}`, 1, 35, "want one port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			if e.Line != tt.line || e.Column != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Parse: %v\nwant line %d, column %d: …%s…", err, tt.line, tt.col, tt.msg)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Line: 12, Column: 7, Msg: `group "group:ops" is not defined`}
	if got, want := e.Error(), `line 12, column 7: group "group:ops" is not defined`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestHasTag(t *testing.T) {
	p, err := Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]bool{"tag:server": true, "TAG:Server": true, "tag:ci": true, "tag:web": false, "server": false} {
		if got := p.HasTag(tag); got != want {
			t.Errorf("HasTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestSourceIsCopy(t *testing.T) {
	b := []byte(`{"acls": []}`)
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	b[0] = 'X'
	p.Source()[1] = 'Y'
	if got := string(p.Source()); got != `{"acls": []}` {
		t.Errorf("Source() = %q after its input and an earlier answer changed", got)
	}
}
