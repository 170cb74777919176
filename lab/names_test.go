//go:build linux

package lab_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// resolvConf is what the namespace's processes see as /etc/resolv.conf
// (ip netns exec mounts the lab's file for the namespace over it).
func resolvConf(t *testing.T, ns *lab.NS) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lab.EtcNetns, ns.Name, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNames: the daemon points its system's resolver at its own, so a
// node pings its peer by name (ping n2) and by its full name (n2.wire);
// unknown names do not resolve; the resolver does not answer another
// node; a rename shows at once; and wire down, a restart after a crash
// and --accept-dns=false leave resolv.conf exactly as it was.
func TestNames(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)
	if got := resolvConf(t, n1.ns); !strings.Contains(got, "nameserver "+n1.vpnIP+"\n") || !strings.Contains(got, "search wire\n") {
		t.Fatalf("n1's resolv.conf while wire is up:\n%s", got)
	}
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
	// Answers as a resolver gives them: an address, no data of another
	// type for an existing name, no such name.
	for _, q := range [][2]string{{"n2.wire", "A"}, {"n2.wire", "AAAA"}, {"nobody.wire", "A"}} {
		want := map[string]string{"A": "NOERROR " + n2.vpnIP, "AAAA": "NOERROR"}[q[1]]
		if q[0] == "nobody.wire" {
			want = "NXDOMAIN"
		}
		if out, err := lab.Run(n1.ns, helperArgs(t, "dns", n1.vpnIP, q[0], q[1])...); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("n1 asking its own resolver for %s %s: %v %q, want %q", q[0], q[1], err, out, want)
		}
	}
	// Names outside the mesh go to the namespace's own upstream (its
	// resolv.conf names 127.0.0.1 before wire's change), unchanged.
	up := lab.Start(t, n1.ns, "upstream", helperArgs(t, "dns-upstream", "127.0.0.1:53")...)
	if _, err := up.WaitLine("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := lab.Run(n1.ns, "getent", "ahostsv4", "www.example.com"); err != nil || !strings.HasPrefix(out, "192.0.2.80 ") {
		t.Errorf("a name outside the mesh through wire's resolver: %v\n%s; want the upstream's 192.0.2.80", err, out)
	}
	up.Kill()
	if out, err := lab.Run(n2.ns, helperArgs(t, "dns", n1.vpnIP, "n2.wire")...); err == nil {
		t.Errorf("n1's resolver answered n2: %q", out)
	}

	// A rename is seen at once.
	if _, err := wire(n2.ns, "down", "--state-dir", n2.dir); err != nil {
		t.Fatal(err)
	}
	n2.proc.Wait(10 * time.Second)
	n2.proc = lab.Start(t, n2.ns, "n2", append([]string{wireBin, "up", "--foreground", "--state-dir", n2.dir, "--name", "n2b"}, nodeFlags()...)...)
	m.waitUp(n2)
	if err := lab.Poll(5*time.Second, 100*time.Millisecond, func() error {
		_, err := lab.Run(n1.ns, "getent", "hosts", "n2b.wire")
		return err
	}); err != nil {
		t.Errorf("n2's new name does not resolve on n1: %v", err)
	}
	if out, err := lab.Run(n1.ns, "getent", "hosts", "n2.wire"); err == nil {
		t.Errorf("n2's old name still resolves on n1 after the rename: %s", out)
	}

	// wire down puts resolv.conf back exactly.
	down := func() {
		t.Helper()
		if _, err := wire(n1.ns, "down", "--state-dir", n1.dir); err != nil {
			t.Fatal(err)
		}
		n1.proc.Wait(10 * time.Second)
		if got := resolvConf(t, n1.ns); got != lab.LabResolvConf {
			t.Errorf("n1's resolv.conf after wire down:\n%s\nwant exactly:\n%s", got, lab.LabResolvConf)
		}
	}
	down()
	// A crash leaves wire's in place; the next start takes it over and
	// wire down still puts the original back.
	m.restart(n1)
	m.waitUp(n1)
	n1.proc.Kill()
	if got := resolvConf(t, n1.ns); !strings.Contains(got, "Written by wire") {
		t.Fatalf("n1's resolv.conf after a SIGKILL:\n%s", got)
	}
	m.restart(n1)
	m.waitUp(n1)
	if err := lab.Poll(10*time.Second, 200*time.Millisecond, func() error {
		_, err := lab.Run(n1.ns, "getent", "hosts", "n2b")
		return err
	}); err != nil {
		t.Errorf("after the restart, n2b does not resolve: %v", err)
	}
	down()
	// --accept-dns=false leaves the system alone.
	n1.proc = lab.Start(t, n1.ns, "n1", append([]string{wireBin, "up", "--foreground", "--state-dir", n1.dir, "--accept-dns=false"}, nodeFlags()...)...)
	m.waitUp(n1)
	if got := resolvConf(t, n1.ns); got != lab.LabResolvConf {
		t.Errorf("n1's resolv.conf with --accept-dns=false:\n%s", got)
	}
	t.Cleanup(func() {
		wire(n1.ns, "down", "--state-dir", n1.dir)
		wire(n2.ns, "down", "--state-dir", n2.dir)
	})
}
