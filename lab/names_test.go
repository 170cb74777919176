//go:build linux

package lab_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wire-mesh/wire/lab"
)

// useResolver gives the namespace a resolv.conf of its own (ip netns exec
// mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf for what it
// runs) that asks the resolver at addr, with the mesh's search domain.
// Nothing of the host's own resolver config is read or changed.
func useResolver(t *testing.T, ns *lab.NS, addr string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns.Name)
	if _, err := os.Stat("/etc/netns"); os.IsNotExist(err) {
		t.Cleanup(func() { os.Remove("/etc/netns") }) // only if empty: another's files stay
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := "nameserver " + addr + "\nsearch wire\noptions timeout:1 attempts:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNames: a node pings its peer by name (ping n2) and by its full name
// (n2.wire) through its own resolver; unknown names do not resolve; and
// the resolver does not answer another node.
func TestNames(t *testing.T) {
	_, n1, n2 := twoNATedNodes(t)
	useResolver(t, n1.ns, n1.vpnIP)
	for _, name := range []string{"n2", "n2.wire", "N2.WIRE", "n1"} {
		if out, err := lab.Run(n1.ns, "ping", "-c", "1", "-W", "2", name); err != nil {
			t.Errorf("ping %s from n1: %v\n%s", name, err, out)
		}
	}
	out, err := lab.Run(n1.ns, "getent", "ahostsv4", "n2.wire")
	if err != nil || !strings.HasPrefix(out, n2.vpnIP+" ") {
		t.Errorf("getent ahostsv4 n2.wire: %v\n%s; want %s", err, out, n2.vpnIP)
	}
	if out, err := lab.Run(n1.ns, "getent", "hosts", "nobody.wire"); err == nil {
		t.Errorf("an unknown name resolved: %s", out)
	}
	st, err := n1.status()
	if p, ok := st.peer("n2"); err != nil || !ok || p.DNSName != "n2.wire" {
		t.Errorf("wire status on n1: n2's dns_name %q (%v)", p.DNSName, err)
	}
	// n2 pointed at n1's resolver gets nothing: it answers only its host.
	useResolver(t, n2.ns, n1.vpnIP)
	if out, err := lab.Run(n2.ns, "getent", "hosts", "n1.wire"); err == nil {
		t.Errorf("n1's resolver answered n2: %s", out)
	}
}
