//go:build linux

package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// sshOnly lets n1 reach n2 on port 22, and nothing else.
const sshOnly = `{
	// n1 may reach n2's ssh, and nothing else is allowed.
	"acls": [
		{"action": "accept", "src": ["n1"], "dst": ["n2:22"]},
	],
}
`

// webByTag lets n1 reach port 80 of the nodes tagged tag:web.
const webByTag = `{
	"tagOwners": {"tag:web": []},
	"acls": [
		{"action": "accept", "src": ["n1"], "dst": ["tag:web:80"]},
	],
}
`

// badPolicy names a group that is not defined, on its line 3.
const badPolicy = `{
	"acls": [
		{"action": "accept", "src": ["group:nobody"], "dst": ["*:*"]},
	],
}
`

// TestPolicy: with a policy letting n1 reach n2:22 only, n1 connects to
// n2:22 and pings n2; n1 → n2:80 and n2 → n1 are refused; n3 does not
// get n1 or n2 as peers at all. A change (n2 tagged, the rule moved to
// tag:web:80) stops a held connection to :22 and opens :80 at once; a
// malformed policy is refused with its line and changes nothing; and
// without a policy every node reaches every other again.
func TestPolicy(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)
	r3 := m.lab.Router("r3", "203.0.113.13", "192.168.3.0/24", lab.NATCone)
	n3 := m.up(m.lab.NodeBehind(r3, "n3", "192.168.3.10"), "n3")
	m.waitPairs(meshTimeout, n1, n2, n3)
	startTCPEcho(t, n2, 22, 80)
	startTCPEcho(t, n1, 22)

	m.setPolicy(sshOnly)
	waitPeers(t, n3)
	waitPeers(t, n1, "n2")
	waitPeers(t, n2, "n1")
	checkReach(t, n1, n2, "22", true)
	checkReach(t, n1, n2, "80", false)
	checkReach(t, n2, n1, "22", false)
	if err := n1.ping("n2"); err != nil {
		t.Errorf("n1 may reach n2 (on port 22), so may ping it: %v", err)
	}
	if err := n2.ping("n1"); err == nil {
		t.Error("n2 pinged n1, which the policy does not allow")
	}
	if out, err := wire(m.srvNS, "server", "policy", "test", "--state-dir", m.srvDir, "n2", "n1:22"); err == nil || !strings.Contains(err.Error(), "deny") {
		t.Errorf("wire server policy test n2 n1:22: %v %q, want deny", err, out)
	}

	// A change: the held ssh connection stops, port 80 opens.
	hold := lab.Start(t, n1.ns, "hold", helperArgs(t, "tcp-hold", n2.vpnIP+":22")...)
	if _, err := hold.WaitLine("connected", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := wire(m.srvNS, "server", "node", "tag", "--state-dir", m.srvDir, "n2", "tag:web"); err == nil {
		t.Error("tagging n2 with a tag the policy does not declare worked")
	}
	changed := m.setPolicy(webByTag)
	if _, err := wire(m.srvNS, "server", "node", "tag", "--state-dir", m.srvDir, "n2", "tag:web"); err != nil {
		t.Fatal(err)
	}
	opened := waitReach(t, n1, n2, "80")
	if _, err := hold.WaitLine("stalled", 5*time.Second); err != nil {
		t.Errorf("a connection the new policy forbids goes on: %v", err)
	}
	t.Logf("a policy change and a tag: port 80 open %v after the policy was set", opened.Sub(changed).Round(time.Millisecond))
	checkReach(t, n1, n2, "22", false)

	// A malformed policy is refused, with its line, and nothing changes.
	bad := filepath.Join(t.TempDir(), "bad.hujson")
	os.WriteFile(bad, []byte(badPolicy), 0o644)
	if _, err := wire(m.srvNS, "server", "policy", "set", "--state-dir", m.srvDir, bad); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("setting a malformed policy: %v, want an error at line 3", err)
	}
	if got, err := wire(m.srvNS, "server", "policy", "get", "--state-dir", m.srvDir); err != nil || got != webByTag {
		t.Errorf("the policy after a malformed one was refused: %v\n%s", err, got)
	}
	checkReach(t, n1, n2, "80", true)

	// No policy: everyone reaches everyone.
	if _, err := wire(m.srvNS, "server", "policy", "remove", "--state-dir", m.srvDir); err != nil {
		t.Fatal(err)
	}
	m.waitPairs(meshTimeout, n1, n2, n3)
	checkReach(t, n2, n1, "22", true)
}

// setPolicy writes the policy to a file, sets it on the server and says
// when that returned.
func (m *mesh) setPolicy(text string) time.Time {
	m.t.Helper()
	f := filepath.Join(m.t.TempDir(), "policy.hujson")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if _, err := wire(m.srvNS, "server", "policy", "set", "--state-dir", m.srvDir, f); err != nil {
		m.t.Fatal(err)
	}
	return time.Now()
}

// startTCPEcho runs a TCP echo server on the node's VPN address.
func startTCPEcho(t *testing.T, n *node, ports ...int) {
	t.Helper()
	args := []string{"tcp-echo"}
	for _, p := range ports {
		args = append(args, fmt.Sprintf("%s:%d", n.vpnIP, p))
	}
	p := lab.Start(t, n.ns, "tcp-echo-"+n.name, helperArgs(t, args...)...)
	if _, err := p.WaitLine("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// dial says whether a connects to b's port within timeout and exchanges
// a line.
func dial(t *testing.T, a, b *node, port string, timeout time.Duration) error {
	out, err := lab.Run(a.ns, helperArgs(t, "tcp-dial", b.vpnIP+":"+port, timeout.String())...)
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// checkReach checks that a reaches b's port, or does not.
func checkReach(t *testing.T, a, b *node, port string, want bool) {
	t.Helper()
	if err := dial(t, a, b, port, time.Second); (err == nil) != want {
		t.Errorf("%s → %s:%s: %v; want reachable %v", a.name, b.name, port, err, want)
	}
}

// waitReach waits until a reaches b's port and says when it first did.
func waitReach(t *testing.T, a, b *node, port string) time.Time {
	t.Helper()
	var at time.Time
	err := lab.Poll(10*time.Second, 20*time.Millisecond, func() error {
		err := dial(t, a, b, port, 200*time.Millisecond)
		at = time.Now()
		return err
	})
	if err != nil {
		t.Fatalf("%s never reached %s:%s: %v", a.name, b.name, port, err)
	}
	return at
}

// waitPeers waits until the node's peers are exactly the names given.
func waitPeers(t *testing.T, n *node, want ...string) {
	t.Helper()
	var got []string
	err := lab.Poll(10*time.Second, 100*time.Millisecond, func() error {
		st, err := n.status()
		if err != nil {
			return err
		}
		got = got[:0]
		for _, p := range st.Peers {
			got = append(got, p.NodeName)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("peers %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: want peers %q: %v", n.name, want, err)
	}
}
