//go:build linux

package lab_test

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// childEnv marks a re-executed test binary that runs TestRequireChild.
const childEnv = "WIRE_LAB_REQUIRE_CHILD"

// TestRequire checks that a machine without the tools skips the lab with
// the reason, and that CI fails instead of skipping.
func TestRequire(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(exe, "-test.run=^TestRequireChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1", "PATH=/nonexistent", "CI="+ci)
		out, err := cmd.CombinedOutput()
		for _, want := range []string{"iproute2", "nftables", "iputils-ping"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("CI=%q: the message does not name %s:\n%s", ci, want, out)
			}
		}
		if skipped := strings.Contains(string(out), "--- SKIP"); (ci == "") != (skipped && err == nil) {
			t.Errorf("CI=%q: want a skip without CI and a failure with it; got err %v:\n%s", ci, err, out)
		}
	}
}

// TestRequireChild is run by TestRequire, with no tools on PATH.
func TestRequireChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestRequire")
	}
	lab.Require(t)
	t.Error("lab.Require let the test run without ip, nft and ping")
}

// TestConeRouter checks that a node behind a home router reaches the
// internet, while nothing on the internet reaches the router or its LAN
// unasked, and that it is the router's ruleset that stops it.
func TestConeRouter(t *testing.T) {
	lab.Require(t)
	l := lab.New(t)
	pub := l.Host("pub", "203.0.113.20")
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	n1 := l.NodeBehind(r1, "n1", "192.168.1.10")

	before, err := r1.Counters("wan")
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Ping(pub.IP.String()); err != nil {
		t.Fatalf("node behind a cone NAT cannot reach the internet: %v", err)
	}
	after, _ := r1.Counters("wan")
	if d := after.Sub(before); d.TxPackets == 0 || d.RxPackets == 0 {
		t.Errorf("the router's WAN counters did not move with the ping: %+v", d)
	}
	// An attacker on the internet routes the LAN's range at the router.
	if _, err := lab.Run(pub, "ip", "route", "add", r1.LAN.String(), "via", r1.IP.String()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Ping(r1.IP.String()); err == nil {
		t.Errorf("the internet reaches the router's WAN address unasked")
	}
	if err := pub.Ping(n1.IP.String()); err == nil {
		t.Errorf("the internet reaches a host behind the router unasked")
	}
	if err := n1.Ping(pub.IP.String()); err != nil {
		t.Errorf("after the unasked pings, the node no longer reaches the internet: %v", err)
	}
	// Without the filter table the same pings go through: the ruleset, not
	// the topology, is what stopped them.
	if _, err := lab.Run(r1.NS, "nft", "delete", "table", "ip", "filter"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Ping(n1.IP.String()); err != nil {
		t.Errorf("without the router's filter the LAN should be reachable (control): %v", err)
	}
}

// TestNATMapping checks the two kinds of NAT with UDP: a cone router keeps
// one public port for every destination; a symmetric one picks a new port
// per destination. It also switches one router between the kinds.
func TestNATMapping(t *testing.T) {
	lab.Require(t)
	l := lab.New(t)
	pub := l.Host("pub", "203.0.113.20")
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	n1 := l.NodeBehind(r1, "n1", "192.168.1.10")
	startEcho(t, pub, 3478, 3479, 3480)
	dests := []string{"203.0.113.20:3478", "203.0.113.20:3479", "203.0.113.20:3480"}

	for i, kind := range []lab.NAT{lab.NATCone, lab.NATSymmetric, lab.NATCone} {
		if i > 0 {
			r1.SetKind(kind)
		}
		local := 40000 + i // a fresh socket: no mapping from the previous kind
		seen := askEcho(t, n1, local, dests...)
		ports := map[string]bool{}
		for _, s := range seen {
			host, port, _ := net.SplitHostPort(s)
			if host != r1.IP.String() {
				t.Errorf("%v: the echo saw %s, want the router's WAN address %s", kind, s, r1.IP)
			}
			ports[port] = true
		}
		t.Logf("%v NAT, local port %d: the internet saw %v", kind, local, seen)
		switch {
		case kind == lab.NATCone && len(ports) != 1:
			t.Errorf("cone NAT mapped one socket to several public ports: %v", seen)
		case kind == lab.NATSymmetric && len(ports) == 1:
			t.Errorf("symmetric NAT kept one public port for %d destinations: %v", len(dests), seen)
		}
		rules, err := r1.Ruleset()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(rules, "masquerade random") != (kind == lab.NATSymmetric) || r1.Kind() != kind {
			t.Errorf("after SetKind(%v) the ruleset is:\n%s", kind, rules)
		}
	}
}

// TestHolePunching checks the model behind direct tunnels: two nodes
// behind two cone routers reach each other once both send to the other's
// public endpoint; with a symmetric router on one side they do not.
func TestHolePunching(t *testing.T) {
	lab.Require(t)
	l := lab.New(t)
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.1.0/24", lab.NATCone)
	n1 := l.NodeBehind(r1, "n1", "192.168.1.10")
	n2 := l.NodeBehind(r2, "n2", "192.168.1.20")

	// A cone router keeps the local port when it is free (TestNATMapping),
	// so each node's public endpoint is its router's address and its port.
	punchBoth := func(port int) (ok1, ok2 bool) {
		p := strconv.Itoa(port)
		a := lab.Start(t, n1, "punch-n1", helperArgs(t, "punch", p, r2.IP.String()+":"+p, "3")...)
		b := lab.Start(t, n2, "punch-n2", helperArgs(t, "punch", p, r1.IP.String()+":"+p, "3")...)
		return a.Wait(10*time.Second) == nil, b.Wait(10*time.Second) == nil
	}
	if ok1, ok2 := punchBoth(41000); !ok1 || !ok2 {
		t.Errorf("cone to cone: n1 heard n2: %v, n2 heard n1: %v; want both", ok1, ok2)
	}
	r1.SetKind(lab.NATSymmetric)
	if ok1, ok2 := punchBoth(41001); ok1 || ok2 {
		t.Errorf("symmetric to cone: n1 heard n2: %v, n2 heard n1: %v; want neither", ok1, ok2)
	}
}

// TestMove carries a node from one router's LAN to another's: its public
// address changes, it still reaches the internet, and its processes live.
func TestMove(t *testing.T) {
	lab.Require(t)
	l := lab.New(t)
	pub := l.Host("pub", "203.0.113.20")
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "10.0.2.0/24", lab.NATCone)
	n1 := l.NodeBehind(r1, "n1", "192.168.1.10")
	startEcho(t, pub, 3478)
	sleeper := lab.Start(t, n1, "sleep", "sleep", "60")

	if seen := askEcho(t, n1, 40000, "203.0.113.20:3478"); !strings.HasPrefix(seen[0], "203.0.113.11:") {
		t.Errorf("before the move the internet saw %s, want r1's address", seen[0])
	}
	l.Move(n1, r2, "10.0.2.10")
	if n1.Router != r2 || n1.IP.String() != "10.0.2.10" {
		t.Errorf("after the move: router %v, address %v", n1.Router, n1.IP)
	}
	if seen := askEcho(t, n1, 40000, "203.0.113.20:3478"); !strings.HasPrefix(seen[0], "203.0.113.12:") {
		t.Errorf("after the move the internet saw %s, want r2's address", seen[0])
	}
	if err := n1.Ping(pub.IP.String()); err != nil {
		t.Errorf("after the move: %v", err)
	}
	if out, err := lab.Run(r1.NS, "ip", "-o", "link", "show", "master", "lan"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("r1's LAN still has ports after the move (%v): %s", err, out)
	}
	if sleeper.Exited() {
		t.Errorf("the node's process ended with the move: %s", sleeper.Output())
	}
}

// TestCleanup checks that a lab leaves nothing when its test ends, and
// that a new lab removes what crashed runs left, and only that.
func TestCleanup(t *testing.T) {
	lab.Require(t)
	var prefix string
	var started, orphan int
	t.Run("lab", func(t *testing.T) {
		l := lab.New(t)
		r := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATSymmetric)
		n := l.NodeBehind(r, "n1", "192.168.1.10")
		prefix, started = l.Prefix(), lab.Start(t, n, "sleep", "sleep", "60").Pid()
		// A daemon that Start did not start: the namespace's removal ends it.
		out, err := lab.Run(n, "sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!")
		if orphan, _ = strconv.Atoi(strings.TrimSpace(out)); err != nil || orphan == 0 {
			t.Fatalf("starting a daemon: %v %q", err, out)
		}
	})
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after the test: %v", left)
	}
	for _, pid := range []int{started, orphan} {
		if running(pid) {
			t.Errorf("process %d still runs after the test", pid)
		}
	}

	// A crashed run's leftovers: its owner's pid is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := "wl" + strconv.Itoa(dead.Process.Pid) + "-1-r1"
	kept := []string{"wl1-1-live", "wlan-other"} // a live owner (pid 1); not a lab's name
	for _, name := range append(kept, stale) {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v %s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	}
	lab.New(t)
	if left := namespacesWith(t, stale); len(left) > 0 {
		t.Errorf("a new lab left the crashed run's %v", left)
	}
	for _, name := range kept {
		if len(namespacesWith(t, name)) == 0 {
			t.Errorf("a new lab removed %s, which is not a crashed lab's", name)
		}
	}
}

// running says whether a process exists and is not a zombie.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// namespacesWith lists the namespaces whose names start with prefix.
func namespacesWith(t *testing.T, prefix string) []string {
	t.Helper()
	names, err := lab.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// askEcho asks echo servers, from one local port of the node, which
// address they saw.
func askEcho(t *testing.T, n *lab.NS, local int, dests ...string) []string {
	t.Helper()
	out, err := lab.Run(n, helperArgs(t, append([]string{"probe", strconv.Itoa(local)}, dests...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	seen := strings.Fields(out)
	if len(seen) != len(dests) {
		t.Fatalf("probe printed %q for %d destinations", out, len(dests))
	}
	return seen
}
