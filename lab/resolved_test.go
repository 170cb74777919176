//go:build linux

package lab_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// TestResolvedSplitDNS runs a node on a machine whose resolver is
// systemd-resolved, as Debian sets it up (/etc/resolv.conf its stub's
// symlink), and checks what a user would: wire's interface gets wire's
// resolver for the mesh's domain and nothing else, names resolve through
// the stub, the global settings stay as they were, and wire down (also
// after a crash and restart) takes it all away again.
//
// systemd-resolved is unpacked from Debian's package into the box only:
// installing it would replace this machine's /etc/resolv.conf. It needs
// apt's package lists (apt-get update) the first time; the packages are
// cached in ~/.cache/wire-lab/debs.
func TestResolvedSplitDNS(t *testing.T) {
	requireWire(t)
	skipOrFail := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format+" (CI=true: it must run)", args...)
		}
		t.Skipf(format+": skipping", args...)
	}
	if err := lab.CheckSystemd(); err != nil {
		skipOrFail("%v", err)
	}
	if err := lab.CheckDebs(); err != nil {
		skipOrFail("%v", err)
	}
	trees, err := resolvedDebs()
	if err != nil {
		skipOrFail("systemd-resolved: %v", err)
	}
	box := lab.BootSystemd(t, wireBin)
	r := &resolvedBox{t: t, box: box}
	r.run("ip", "link", "set", "lo", "up")
	for _, dir := range trees {
		if err := box.Install(dir); err != nil {
			t.Fatal(err)
		}
	}
	r.startResolved()
	global := r.global()

	r.run("wire", "server", "install-service")
	lines := strings.Split(strings.TrimSpace(r.run("wire", "server", "key", "create", "--reusable")), "\n")
	key := lines[len(lines)-1]
	if out := r.run("wire", "up", "--server", "https://127.0.0.1:8787", "--join", key, "--name", "box"); !strings.HasPrefix(out, "wire is up: box 10.99.") {
		t.Fatalf("wire up: %s", out)
	}
	// A second node, on the same machine, leaves the system's DNS to the
	// first: its name is a peer's, which the first node's resolver knows.
	r.run("systemd-run", "--unit=peer", "wire", "up", "--foreground", "--state-dir", "/var/lib/peer",
		"--server", "https://127.0.0.1:8787", "--join", key, "--name", "peer",
		"--interface", "wire1", "--port", "51821", "--accept-dns=false")
	boxIP, peerIP := r.vpnIP("/etc/wire"), r.vpnIP("/var/lib/peer")

	r.checkSplit("after wire up", boxIP, global)
	r.lookup("box.wire", boxIP)
	r.lookup("peer.wire", peerIP)
	r.lookup("peer", peerIP) // the domain is searched too
	if out, err := box.Run(cmdTimeout, "resolvectl", "query", "--cache=no", "example.org"); err == nil || !strings.Contains(out, "No appropriate name servers") {
		t.Errorf("a name outside the mesh was routed somewhere (only wire's link has a DNS server here, and it must not take it): %v\n%s", err, out)
	}
	if out, err := box.Run(cmdTimeout, "resolvectl", "dns", "wire1"); err != nil || strings.Contains(out, "10.99.") {
		t.Errorf("the node with --accept-dns=false set DNS on its interface: %v\n%s", err, out)
	}

	// Killed, the daemon is restarted by systemd on a new interface, which
	// it configures again.
	pid := r.mainPID("wire")
	r.run("systemctl", "kill", "--signal=KILL", "wire")
	if err := lab.Poll(20*time.Second, 200*time.Millisecond, func() error {
		if again := r.mainPID("wire"); again == pid || again == "0" {
			return fmt.Errorf("wire.service's main process is %s", again)
		}
		_, err := box.Run(cmdTimeout, "wire", "status")
		return err
	}); err != nil {
		t.Fatalf("wire.service not back after SIGKILL: %v", err)
	}
	r.checkSplit("after a SIGKILL and restart", boxIP, global)
	r.lookup("peer.wire", peerIP)

	if out := r.run("wire", "down"); strings.TrimSpace(out) != "wire is down (service stopped)" {
		t.Errorf("wire down: %q", out)
	}
	if out := r.run("resolvectl", "dns"); strings.Contains(out, boxIP) {
		t.Errorf("after wire down resolved still has wire's resolver:\n%s", out)
	}
	if got := r.global(); got != global {
		t.Errorf("after wire down resolved's global settings are\n%s\nwant as before:\n%s", got, global)
	}
	r.checkStub("after wire down")
	if out := r.run("journalctl", "--no-pager", "-o", "cat", "-u", "wire"); !strings.Contains(out, "how=systemd-resolved") || strings.Contains(out, "DNS: could not") {
		// "resolvectl revert wire0: signal: terminated": systemctl stop sent
		// SIGTERM to the whole unit, the daemon's resolvectl too.
		t.Errorf("wire's log does not say it used systemd-resolved without a failure:\n%s", out)
	}
}

// resolvedBox is a systemd box with systemd-resolved as its resolver.
type resolvedBox struct {
	t   *testing.T
	box *lab.SystemdBox
}

func (r *resolvedBox) run(args ...string) string {
	r.t.Helper()
	out, err := r.box.Run(cmdTimeout, args...)
	if err != nil {
		r.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// stubLink is where Debian's systemd-resolved points /etc/resolv.conf.
const stubLink = "../run/systemd/resolve/stub-resolv.conf"

// resolvedConf keeps the box's resolver from any server but wire's:
// resolved has no global servers, and no fallback (to the internet).
const resolvedConf = "[Resolve]\nDNS=\nFallbackDNS=\n"

// startResolved does in the box what installing the package would: its
// user, its D-Bus policy read, /etc/resolv.conf its stub's symlink, and
// the service started.
func (r *resolvedBox) startResolved() {
	r.t.Helper()
	r.run("mkdir", "-p", "/etc/systemd/resolved.conf.d")
	r.run("sh", "-c", "printf '"+resolvedConf+"' >/etc/systemd/resolved.conf.d/wirelab.conf")
	r.run("systemd-sysusers")
	r.run("systemctl", "daemon-reload")
	r.run("systemctl", "start", "dbus.socket")
	r.run("busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ReloadConfig")
	r.run("ln", "-sfn", stubLink, "/etc/resolv.conf")
	r.run("systemctl", "start", "systemd-resolved")
	r.checkStub("with resolved started")
}

// checkStub checks that /etc/resolv.conf is still resolved's symlink.
func (r *resolvedBox) checkStub(when string) {
	r.t.Helper()
	if out := r.run("readlink", "/etc/resolv.conf"); strings.TrimSpace(out) != stubLink {
		r.t.Errorf("%s /etc/resolv.conf links to %q, want %s", when, out, stubLink)
	}
	if out := r.run("cat", "/etc/resolv.conf"); !strings.Contains(out, "\nnameserver 127.0.0.53\n") {
		r.t.Errorf("%s /etc/resolv.conf does not name resolved's stub:\n%s", when, out)
	}
}

// global is resolved's global section (the servers and domains of no
// link): wire must leave it alone.
func (r *resolvedBox) global() string {
	r.t.Helper()
	out := r.run("resolvectl", "status")
	global, _, _ := strings.Cut(out, "\nLink ")
	if !strings.HasPrefix(global, "Global") {
		r.t.Fatalf("resolvectl status:\n%s", out)
	}
	return global
}

// checkSplit checks that wire0 has wire's resolver for the mesh's domain
// alone, and nothing else changed.
func (r *resolvedBox) checkSplit(when, vpnIP string, global string) {
	r.t.Helper()
	var dns, domain string
	err := lab.Poll(10*time.Second, 200*time.Millisecond, func() error {
		dns, domain = r.run("resolvectl", "dns", "wire0"), r.run("resolvectl", "domain", "wire0")
		if !strings.Contains(dns, "(wire0): "+vpnIP+"\n") {
			return fmt.Errorf("resolvectl dns wire0: %s", dns)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("%s: wire's resolver is not wire0's DNS server: %v", when, err)
	}
	r.t.Logf("%s, resolvectl status wire0:\n%s", when, r.run("resolvectl", "status", "wire0"))
	if !regexp.MustCompile(`\(wire0\): ~?wire\n$`).MatchString(domain) {
		r.t.Errorf("%s resolvectl domain wire0 says %q, want the mesh's domain alone", when, domain)
	}
	// Not the default route: names outside the mesh's domain go where they
	// went, not to wire's resolver.
	if out := r.run("resolvectl", "default-route", "wire0"); !strings.HasSuffix(out, "(wire0): no\n") {
		r.t.Errorf("%s wire0 is a default route for DNS, so every name goes to wire's resolver: resolvectl default-route wire0 says %q", when, out)
	}
	if got := r.global(); got != global {
		r.t.Errorf("%s resolved's global settings are\n%s\nwant as before:\n%s", when, got, global)
	}
	if out := r.run("cat", "/etc/resolv.conf"); !strings.Contains(out, "\nsearch wire\n") {
		r.t.Errorf("%s the stub's resolv.conf does not search the mesh's domain:\n%s", when, out)
	}
	r.checkStub(when)
}

// lookup resolves name as a program would (glibc, through the stub) and
// through resolved's own API, and wants addr from wire's link.
func (r *resolvedBox) lookup(name, addr string) {
	r.t.Helper()
	var out string
	err := lab.Poll(15*time.Second, 250*time.Millisecond, func() error {
		var err error
		out, err = r.box.Run(cmdTimeout, "getent", "hosts", name)
		if err != nil || !strings.HasPrefix(out, addr+" ") {
			return fmt.Errorf("getent hosts %s: %v: %q", name, err, out)
		}
		return nil
	})
	if err != nil {
		r.t.Errorf("%v (want %s)", err, addr)
		return
	}
	if !strings.Contains(name, ".") {
		return // resolvectl query asks no search domains for a single label
	}
	out, err = r.box.Run(cmdTimeout, "resolvectl", "query", "--cache=no", name)
	if err != nil || !regexp.MustCompile(regexp.QuoteMeta(name+": "+addr)+` +-- link: wire0\n`).MatchString(out) {
		r.t.Errorf("resolvectl query %s: %v\n%s\nwant %s from wire0", name, err, out, addr)
	}
}

// vpnIP is the VPN address of the node with the state dir.
func (r *resolvedBox) vpnIP(dir string) string {
	r.t.Helper()
	var st status
	err := lab.Poll(upTimeout, 250*time.Millisecond, func() error {
		out, err := r.box.Run(cmdTimeout, "wire", "status", "--json", "--state-dir", dir)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.VPNIP == "" {
			return fmt.Errorf("wire status --json: %v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("the node in %s is not up: %v", dir, err)
	}
	return st.VPNIP
}

func (r *resolvedBox) mainPID(unit string) string {
	r.t.Helper()
	return strings.TrimSpace(r.run("systemctl", "show", "-p", "MainPID", "--value", unit))
}

// resolvedDebs fetches and unpacks the Debian packages the box needs for
// systemd-resolved that this machine does not have: the resolver itself,
// of exactly this machine's systemd version (Debian's depends on it), and
// a D-Bus system bus if this machine has none.
func resolvedDebs() ([]string, error) {
	systemd := lab.Installed("systemd")
	if systemd == "" {
		return nil, fmt.Errorf("the systemd package is not installed")
	}
	want := [][2]string{{"systemd-resolved", systemd}}
	var missing []string // their dependencies that a minimal Debian may lack
	if lab.Installed("dbus-daemon") == "" {
		missing = append(missing, "dbus", "dbus-daemon", "dbus-system-bus-common", "libdbus-1-3")
	}
	for _, pkg := range []string{"libssl3", "libexpat1"} {
		if lab.Installed(pkg) == "" {
			missing = append(missing, pkg)
		}
	}
	for _, pkg := range missing {
		v, err := lab.Candidate(pkg)
		if err != nil {
			return nil, err
		}
		want = append(want, [2]string{pkg, v})
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	var dirs []string
	for _, p := range want {
		dir, err := lab.FetchDeb(filepath.Join(cache, "wire-lab", "debs"), p[0], p[1])
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}
