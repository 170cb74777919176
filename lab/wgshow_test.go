//go:build linux

package lab_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// TestWgShow: wireguard-tools' wg reads a wire interface as any WireGuard
// interface (here the embedded engine's, through its UAPI socket), wg set
// is refused, and a second interface of the same name, in another
// namespace, is refused rather than taking the socket over.
func TestWgShow(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	n1 := m.up(l.Host("n1", "203.0.113.31"), "n1")
	n2 := m.up(l.Host("n2", "203.0.113.32"), "n2")
	m.waitPairs(meshTimeout, n1, n2)
	st1, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	st2, err := n2.status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("n1 runs the %s engine", st1.Engine)

	out, err := lab.Run(n1.ns, "wg", "show", n1.iface)
	for _, want := range []string{"interface: " + n1.iface, "public key: " + st1.WGPublicKey, "listening port: 51820",
		"peer: " + st2.WGPublicKey, "endpoint: 203.0.113.32:", "allowed ips: " + n2.vpnIP + "/32", "latest handshake:"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("wg show %s: %v; want %q in:\n%s", n1.iface, err, want, out)
		}
	}
	out, err = lab.Run(n1.ns, "wg", "show", n1.iface, "dump")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[1], st2.WGPublicKey+"\t") || !strings.Contains(lines[1], n2.vpnIP+"/32") {
		t.Errorf("wg show %s dump: %v\n%s", n1.iface, err, out)
	}
	out, err = lab.Run(n1.ns, "wg", "showconf", n1.iface)
	for _, want := range []string{"[Interface]", "ListenPort = 51820", "[Peer]", "PublicKey = " + st2.WGPublicKey, "AllowedIPs = " + n2.vpnIP + "/32"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("wg showconf %s: %v; want %q in:\n%s", n1.iface, err, want, out)
		}
	}

	if st1.Engine != "userspace" {
		// Kernel WireGuard: wg set is the kernel's to allow (root may),
		// and interfaces are per network namespace, with no shared path.
		t.Logf("%s engine: wg set and the UAPI socket's path are the kernel's matter, not checked here", st1.Engine)
		return
	}
	// wg set is refused: wire owns the interface's configuration.
	if out, err := lab.Run(n1.ns, "wg", "set", n1.iface, "peer", st2.WGPublicKey, "remove"); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("wg set on %s: %v\n%s\nwant it refused", n1.iface, err, out)
	}
	if out, err := lab.Run(n1.ns, "wg", "show", n1.iface, "peers"); err != nil || strings.TrimSpace(out) != st2.WGPublicKey {
		t.Errorf("n1's peers after a refused wg set: %v %q", err, out)
	}

	// Another node in another namespace asks for n1's interface name: the
	// UAPI socket's path is one for all namespaces, so it is refused.
	x := l.Host("x", "203.0.113.33")
	_, stderr, err := wireOut(x, 30*time.Second, "up", "--foreground", "--server", serverURL, "--join", m.key,
		"--name", "x", "--interface", n1.iface, "--state-dir", t.TempDir())
	if err == nil || !strings.Contains(stderr, "UAPI socket") || !strings.Contains(stderr, "another --interface") || !strings.Contains(stderr, "nothing was sent") {
		t.Errorf("a second %s in another namespace: %v\n%s", n1.iface, err, stderr)
	}
	if st, _ := n1.status(); len(st.Peers) != 1 {
		t.Errorf("the refused node was enrolled: n1's peers are %+v", st.Peers)
	}
	if out, err := lab.Run(n1.ns, "wg", "show", n1.iface, "peers"); err != nil || strings.TrimSpace(out) != st2.WGPublicKey {
		t.Errorf("n1's interface after the refused one: %v %q", err, out)
	}
}
