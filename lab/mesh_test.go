//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// The scenarios run the real wire binary in namespaces, against the CLI
// contract: `wire server`, `wire server key create`, `wire up`,
// `wire status --json`, `wire ping` and `wire down`.

const (
	serverIP  = "203.0.113.1"
	serverURL = "https://" + serverIP + ":8787"

	upTimeout   = 30 * time.Second // from `wire up` to a status with a VPN IP
	meshTimeout = 15 * time.Second // from the last node up to every pair pinging
	cmdTimeout  = 20 * time.Second // any one wire command
	pingTimeout = 5 * time.Second  // one wire ping
)

// requireWire fails a scenario whose binary did not build.
func requireWire(t *testing.T) {
	t.Helper()
	lab.Require(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// status is what `wire status --json` prints.
type status struct {
	ServerURL   string       `json:"server_url"`
	NodeName    string       `json:"node_name"`
	VPNIP       string       `json:"vpn_ip"`
	WGPublicKey string       `json:"wg_public_key"`
	Engine      string       `json:"engine"`
	Peers       []peerStatus `json:"peers"`
}

type peerStatus struct {
	NodeName        string          `json:"node_name"`
	DNSName         string          `json:"dns_name"`
	VPNIP           string          `json:"vpn_ip"`
	PublicIP        string          `json:"public_ip"`
	Status          string          `json:"status"`
	Path            string          `json:"path"`
	LatestHandshake json.RawMessage `json:"latest_handshake"`
	Endpoint        string          `json:"endpoint"`
}

func (s status) peer(name string) (peerStatus, bool) {
	for _, p := range s.Peers {
		if p.NodeName == name {
			return p, true
		}
	}
	return peerStatus{}, false
}

// mesh is a lab with a coordination server at serverIP.
type mesh struct {
	t      *testing.T
	lab    *lab.Lab
	srvNS  *lab.NS
	srv    *lab.Proc
	srvDir string
	key    string // reusable
}

// node is one `wire up` daemon.
type node struct {
	name, iface, dir string
	ns               *lab.NS
	proc             *lab.Proc
	vpnIP            string
}

// newMesh makes a lab, starts the server in it and makes a reusable key.
func newMesh(t *testing.T) *mesh {
	t.Helper()
	lab.Require(t)
	requireWire(t)
	l := lab.New(t)
	m := &mesh{t: t, lab: l, srvNS: l.Host("srv", serverIP), srvDir: t.TempDir()}
	m.startServer()
	m.key = m.newKey("--reusable")
	return m
}

// startServer runs `wire server` and waits for its banner.
func (m *mesh) startServer() {
	m.t.Helper()
	m.srv = lab.Start(m.t, m.srvNS, "server", append([]string{wireBin, "server", "--state-dir", m.srvDir, "--listen", serverIP + ":8787"}, debugFlag()...)...)
	if _, err := m.srv.WaitLine("HTTP  "+serverURL, 20*time.Second); err != nil {
		m.t.Fatalf("wire server: %v", err)
	}
}

// newKey makes a join key for the mesh's server.
func (m *mesh) newKey(flags ...string) string {
	m.t.Helper()
	return newKey(m.t, m.srvNS, m.srvDir, flags...)
}

// newKey runs `wire server key create` on a server state dir (made if new)
// and returns the key, its last line.
func newKey(t *testing.T, ns *lab.NS, dir string, flags ...string) string {
	t.Helper()
	out, err := wire(ns, append([]string{"server", "key", "create", "--state-dir", dir}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// join starts `wire up --foreground` with the mesh's key in the namespace,
// with an interface and state dir of its own; it does not wait.
func (m *mesh) join(ns *lab.NS, name string) *node {
	m.t.Helper()
	return m.joinEngine(ns, name, nodeFlags()...)
}

// joinEngine is join with the given flags (an --engine, or none: auto).
func (m *mesh) joinEngine(ns *lab.NS, name string, flags ...string) *node {
	m.t.Helper()
	n := &node{name: name, iface: "wire-" + name, dir: m.t.TempDir(), ns: ns}
	n.proc = lab.Start(m.t, ns, name, append([]string{wireBin, "up", "--foreground", "--server", serverURL, "--join", m.key,
		"--name", name, "--interface", n.iface, "--state-dir", n.dir}, flags...)...)
	return n
}

// restart starts the node's daemon again from its state dir, without a key.
func (m *mesh) restart(n *node) {
	m.t.Helper()
	n.proc = lab.Start(m.t, n.ns, n.name, append([]string{wireBin, "up", "--foreground", "--state-dir", n.dir}, nodeFlags()...)...)
}

// nodeFlags are the flags every lab node runs with: the VM's --engine, if
// it set one, and --debug when the lab keeps its logs.
func nodeFlags() []string {
	var flags []string
	if e := os.Getenv(engineEnv); e != "" {
		flags = append(flags, "--engine", e)
	}
	return append(flags, debugFlag()...)
}

// debugFlag is --debug when the lab keeps its logs (lab.LogsEnv), for them
// to say more.
func debugFlag() []string {
	if os.Getenv(lab.LogsEnv) != "" {
		return []string{"--debug"}
	}
	return nil
}

// up joins a node and waits until its daemon reports its VPN address.
func (m *mesh) up(ns *lab.NS, name string) *node {
	m.t.Helper()
	n := m.join(ns, name)
	m.waitUp(n)
	return n
}

// waitUp waits until `wire status` shows the node with a VPN IP.
func (m *mesh) waitUp(n *node) status {
	m.t.Helper()
	var st status
	err := lab.Poll(upTimeout, 200*time.Millisecond, func() error {
		if n.proc.Exited() {
			return lab.Abort(fmt.Errorf("wire up exited: %v", n.proc.Wait(0)))
		}
		var err error
		if st, err = n.status(); err == nil && st.VPNIP == "" {
			err = errors.New("no VPN IP yet")
		}
		return err
	})
	if err != nil {
		m.t.Fatalf("%s is not up: %v", n.name, err)
	}
	n.vpnIP = st.VPNIP
	return st
}

// status runs `wire status --json` in the node's namespace.
func (n *node) status() (status, error) {
	out, err := wire(n.ns, "status", "--json", "--state-dir", n.dir)
	if err != nil {
		return status{}, err
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return status{}, fmt.Errorf("%s: wire status --json: %v: %s", n.name, err, out)
	}
	return st, nil
}

// ping runs `wire ping` to a peer, one echo request.
func (n *node) ping(peer string) error {
	args := []string{"ping", "--state-dir", n.dir, "--count", "1", peer}
	_, stderr, err := wireOut(n.ns, pingTimeout, args...)
	if err != nil {
		return fmt.Errorf("in %s: wire %s: %v: %s", n.ns, strings.Join(args, " "), err, strings.TrimSpace(stderr))
	}
	return nil
}

// waitPairs waits until every ordered pair of nodes pings over the VPN and
// says how long that took.
func (m *mesh) waitPairs(timeout time.Duration, nodes ...*node) time.Duration {
	m.t.Helper()
	start := time.Now()
	pending := map[[2]*node]error{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				pending[[2]*node{a, b}] = nil
			}
		}
	}
	lab.Poll(timeout, 200*time.Millisecond, func() error {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, pair := range slices.Collect(maps.Keys(pending)) {
			wg.Go(func() {
				err := pair[0].ping(pair[1].name)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					pending[pair] = err
				} else {
					delete(pending, pair)
				}
			})
		}
		wg.Wait()
		if len(pending) > 0 {
			return errors.New("pending")
		}
		return nil
	})
	failing := map[*node]bool{}
	for pair, err := range pending {
		m.t.Errorf("%s cannot ping %s over the VPN within %v: %v", pair[0].name, pair[1].name, timeout, err)
		failing[pair[0]], failing[pair[1]] = true, true
	}
	for n := range failing { // what each side holds: peers, paths, filters
		out, err := wire(n.ns, "status", "--json", "--state-dir", n.dir)
		m.t.Logf("%s's wire status --json (%v):\n%s", n.name, err, out)
	}
	if len(pending) > 0 {
		m.t.FailNow()
	}
	return time.Since(start)
}

// wire runs the binary in a namespace for at most cmdTimeout and returns
// its stdout; the error has its stderr.
func wire(ns *lab.NS, args ...string) (string, error) {
	stdout, stderr, err := wireOut(ns, cmdTimeout, args...)
	if err != nil {
		return stdout, fmt.Errorf("in %s: wire %s: %v: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(stderr))
	}
	return stdout, nil
}

// wireOut runs the binary in a namespace for at most timeout.
func wireOut(ns *lab.NS, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := lab.Command(ctx, ns, append([]string{wireBin}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no exit within %v (%v)", timeout, err)
	}
	return o.String(), e.String(), err
}

var pingReceived = regexp.MustCompile(`(\d+) received`)

// TestMeshDirect is scenario 1: two nodes behind two cone NATs and a
// public node join; every pair pings over the VPN soon after, each sees
// the others on a direct path, and bulk traffic between the NATed nodes
// does not pass the server.
func TestMeshDirect(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.1.0/24", lab.NATCone) // the same home range
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.1.20"), "n2")
	n3 := m.up(l.Host("n3", "203.0.113.30"), "n3")
	nodes := []*node{n1, n2, n3}
	t.Logf("every pair pings %v after the last node is up", m.waitPairs(meshTimeout, nodes...))

	public := map[string]string{"n1": r1.IP.String(), "n2": r2.IP.String(), "n3": "203.0.113.30"}
	for _, n := range nodes {
		err := lab.Poll(5*time.Second, 250*time.Millisecond, func() error {
			st, err := n.status()
			if err != nil {
				return err
			}
			return checkPeers(st, nodes, public)
		})
		if err != nil {
			t.Errorf("wire status on %s: %v", n.name, err)
		}
	}

	// wire ping as a user types it: a peer's name in another case, and
	// this node's own; each reply printed as it comes, with the endpoint
	// that answered.
	out, err := wire(n1.ns, "ping", "--state-dir", n1.dir, "--count", "2", "N2")
	if err != nil || strings.Count(out, "reply from N2: seq=") != 2 || !strings.Contains(out, " via "+r2.IP.String()+":") || !strings.Contains(out, "path direct") {
		t.Errorf("wire ping N2 from n1: %v\n%s", err, out)
	}
	if out, err := wire(n1.ns, "ping", "--state-dir", n1.dir, "--count", "1", "n1"); err != nil || !strings.Contains(out, "path self") {
		t.Errorf("wire ping n1 from n1 itself: %v\n%s", err, out)
	}

	// About 3 MB over the tunnel between the NATed nodes, none of it via
	// the server.
	srvBefore, err := m.srvNS.Counters("eth0")
	if err != nil {
		t.Fatal(err)
	}
	wanBefore, _ := r1.Counters("wan")
	out, err = lab.Run(n1.ns, "ping", "-q", "-n", "-c", "200", "-i", "0.01", "-s", "8000", "-W", "2", n2.vpnIP)
	if m := pingReceived.FindStringSubmatch(out); err != nil || m == nil || atoi(m[1]) < 190 {
		t.Fatalf("bulk ping from n1 to n2 over the VPN: %v\n%s", err, out)
	}
	srvAfter, _ := m.srvNS.Counters("eth0")
	wanAfter, _ := r1.Counters("wan")
	srv, wan := srvAfter.Sub(srvBefore), wanAfter.Sub(wanBefore)
	t.Logf("during the bulk ping: the server's eth0 moved rx %d tx %d bytes; r1's WAN tx %d rx %d", srv.RxBytes, srv.TxBytes, wan.TxBytes, wan.RxBytes)
	if wan.TxBytes < 1500000 || wan.RxBytes < 1500000 {
		t.Errorf("r1's WAN carried only tx %d rx %d bytes of the bulk ping: the test measured nothing", wan.TxBytes, wan.RxBytes)
	}
	if srv.RxBytes+srv.TxBytes > 200000 {
		t.Errorf("the server's interface carried %d bytes while n1 and n2 exchanged 3.2 MB: VPN traffic is going through the server", srv.RxBytes+srv.TxBytes)
	}

	// n3 goes down: the others see it offline within a second or so, not
	// online for five minutes.
	if _, err := wire(n3.ns, "down", "--state-dir", n3.dir); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	err = lab.Poll(3*time.Second, 100*time.Millisecond, func() error {
		st, err := n1.status()
		if err != nil {
			return err
		}
		if p, ok := st.peer("n3"); !ok || p.Status != "offline" {
			return fmt.Errorf("n1 sees n3 as %+v", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after wire down on n3: %v", err)
	} else {
		t.Logf("n1 saw n3 offline %v after its wire down", time.Since(down).Round(time.Millisecond))
	}
}

// TestMeshSameNAT: two nodes behind one home router talk over their LAN
// addresses, not hairpinned through the router's public address.
func TestMeshSameNAT(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	a := m.up(l.NodeBehind(r1, "a", "192.168.1.10"), "a")
	b := m.up(l.NodeBehind(r1, "b", "192.168.1.11"), "b")
	m.waitPairs(meshTimeout, a, b)
	st, err := a.status()
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := st.peer("b"); p.Path != "direct" || !strings.HasPrefix(p.Endpoint, "192.168.1.11:") {
		t.Errorf("a's path to b: %s via %q, want direct via b's LAN address 192.168.1.11", p.Path, p.Endpoint)
	}
	before, _ := r1.Counters("wan")
	out, err := lab.Run(a.ns, "ping", "-q", "-n", "-c", "100", "-i", "0.01", "-s", "8000", "-W", "2", b.vpnIP)
	if m := pingReceived.FindStringSubmatch(out); err != nil || m == nil || atoi(m[1]) < 95 {
		t.Fatalf("bulk ping from a to b: %v\n%s", err, out)
	}
	after, _ := r1.Counters("wan")
	if d := after.Sub(before); d.RxBytes+d.TxBytes > 100000 {
		t.Errorf("the router's WAN carried %d bytes of a LAN-local transfer: traffic hairpins", d.RxBytes+d.TxBytes)
	}
	checkLocalUsers(t, a)
}

// checkLocalUsers runs the CLI as an unprivileged user: reading works
// without sudo, as in the seed; taking the node down does not.
func checkLocalUsers(t *testing.T, n *node) {
	t.Helper()
	for _, dir := range []string{filepath.Dir(wireBin), filepath.Dir(n.dir), n.dir} {
		os.Chmod(dir, 0o755)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", wireBin}
	if out, err := lab.Run(n.ns, append(nobody, "status", "--state-dir", n.dir)...); err != nil || !strings.Contains(out, "this node") {
		t.Errorf("wire status as nobody: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"down"}, {"send", "x", "hi"}, {"tail"}, {"pair", "x"}, {"block", "x"}} {
		out, err := lab.Run(n.ns, append(append(nobody, args[0], "--state-dir", n.dir), args[1:]...)...)
		if err == nil || !strings.Contains(out+err.Error(), "needs root") {
			t.Errorf("wire %s as nobody: %v\n%s; want a refusal that says it needs root", strings.Join(args, " "), err, out)
		}
	}
	if _, err := n.status(); err != nil {
		t.Errorf("the node is not up after nobody's wire down: %v", err)
	}
}

// checkPeers says what is wrong in a node's view of the others: each must
// be listed with its VPN IP and public IP, on a direct path.
func checkPeers(st status, nodes []*node, public map[string]string) error {
	var bad []string
	for _, o := range nodes {
		if o.name == st.NodeName {
			continue
		}
		p, ok := st.peer(o.name)
		switch {
		case !ok:
			bad = append(bad, o.name+" is missing")
		case p.Path != "direct":
			bad = append(bad, fmt.Sprintf("%s: path %q, want direct", o.name, p.Path))
		case p.VPNIP != o.vpnIP:
			bad = append(bad, fmt.Sprintf("%s: vpn_ip %s, want %s", o.name, p.VPNIP, o.vpnIP))
		case public[o.name] != "" && p.PublicIP != public[o.name]:
			bad = append(bad, fmt.Sprintf("%s: public_ip %q, want %s", o.name, p.PublicIP, public[o.name]))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// TestMeshJoinToPing is scenario 2: the time from starting `wire up` on a
// fresh node behind a NAT to the first answered ping from a peer behind
// another NAT.
func TestMeshJoinToPing(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n3 := m.up(l.Host("n3", "203.0.113.30"), "n3")
	m.waitPairs(meshTimeout, n1, n3)

	ns2 := l.NodeBehind(r2, "n2", "192.168.2.10")
	start := time.Now()
	n2 := m.join(ns2, "n2")
	err := lab.Poll(30*time.Second, 100*time.Millisecond, func() error {
		if n2.proc.Exited() {
			return lab.Abort(fmt.Errorf("wire up exited: %v", n2.proc.Wait(0)))
		}
		return n1.ping("n2")
	})
	if err != nil {
		t.Fatalf("n1 never pinged the new node n2: %v", err)
	}
	took := time.Since(start)
	t.Logf("join-to-ping: %.2fs", took.Seconds())
	fmt.Printf("join-to-ping: %.2fs\n", took.Seconds())
}

// TestMeshServerOutage is scenario 3: with the server killed, tunnels keep
// carrying pings for a minute, and a node daemon restarted meanwhile
// restores its tunnels from its cache. Once the server is back, a new
// node joins and everyone sees it at once.
func TestMeshServerOutage(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	n3 := m.up(l.Host("n3", "203.0.113.30"), "n3")
	nodes := []*node{n1, n2, n3}
	m.waitPairs(meshTimeout, nodes...)
	key := m.newKey() // for the node that joins after the outage

	m.srv.Kill()
	outage := time.Now()
	var restarted, recovered time.Time
	for round := 0; time.Since(outage) < 60*time.Second && round < 200; round++ {
		if restarted.IsZero() && time.Since(outage) > 10*time.Second {
			n2.proc.Kill()
			m.restart(n2)
			restarted = time.Now()
		}
		for _, a := range nodes {
			for _, b := range nodes {
				involved := a == n2 || b == n2
				if a == b || involved && !restarted.IsZero() && recovered.IsZero() {
					continue
				}
				if err := vpnPing(a, b); err != nil {
					t.Fatalf("%v into the outage (n2 restarted: %v): %s cannot reach %s over the VPN: %v",
						time.Since(outage).Round(time.Second), !restarted.IsZero(), a.name, b.name, err)
				}
			}
		}
		if !restarted.IsZero() && recovered.IsZero() {
			if pairsUp(n2, nodes) {
				recovered = time.Now()
				t.Logf("n2, restarted without the server, reached its peers after %v", recovered.Sub(restarted))
			} else if time.Since(restarted) > 20*time.Second {
				t.Fatalf("n2, restarted without the server, did not restore its tunnels within 20s")
			}
		}
		time.Sleep(time.Second)
	}
	if recovered.IsZero() {
		t.Fatalf("n2 was not restarted and checked during the outage")
	}

	m.startServer()
	n4ns := l.Host("n4", "203.0.113.40")
	n4 := &node{name: "n4", iface: "wire-n4", dir: t.TempDir(), ns: n4ns}
	n4.proc = lab.Start(t, n4ns, "n4", wireBin, "up", "--foreground", "--server", serverURL, "--join", key,
		"--name", "n4", "--interface", n4.iface, "--state-dir", n4.dir)
	m.waitUp(n4)
	joined := time.Now()
	waitListed(t, 3*time.Second, "n4", "after the server came back", nodes...)
	t.Logf("every node listed n4 %v after it joined", time.Since(joined))
	m.waitPairs(meshTimeout, append(nodes, n4)...)
}

// waitListed waits up to timeout for each node to list peer among its
// peers; what says when, for the errors.
func waitListed(t *testing.T, timeout time.Duration, peer, what string, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		err := lab.Poll(timeout, 100*time.Millisecond, func() error {
			st, err := n.status()
			if err != nil {
				return err
			}
			if _, ok := st.peer(peer); !ok {
				return fmt.Errorf("%s is not among its peers", peer)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s %s: %v", n.name, what, err)
		}
	}
}

// vpnPing sends up to two pings (a second if the first is lost) from one
// node's namespace to another's VPN IP.
func vpnPing(a, b *node) error {
	err := a.ns.Ping(b.vpnIP)
	if err != nil {
		err = a.ns.Ping(b.vpnIP)
	}
	return err
}

// pairsUp says whether n and every other node ping each other.
func pairsUp(n *node, nodes []*node) bool {
	for _, o := range nodes {
		if o != n && (vpnPing(n, o) != nil || vpnPing(o, n) != nil) {
			return false
		}
	}
	return true
}

// TestMeshRoaming is scenario 4: a node carried from one home router's LAN
// to a third router's gets its tunnel back within seconds.
func TestMeshRoaming(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	r3 := l.Router("r3", "203.0.113.13", "10.0.3.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	m.waitPairs(meshTimeout, n1, n2)

	l.Move(n1.ns, r3, "10.0.3.10")
	took := m.waitPairs(10*time.Second, n1, n2)
	t.Logf("roam-to-ping: %.2fs", took.Seconds())
	err := lab.Poll(10*time.Second, 250*time.Millisecond, func() error {
		st, err := n2.status()
		if err != nil {
			return err
		}
		return checkPeers(st, []*node{n1, n2}, map[string]string{"n1": r3.IP.String()})
	})
	if err != nil {
		t.Errorf("wire status on n2 after n1 moved: %v", err)
	}
}

// TestUpBadInput is scenario 5: `wire up` given a bad key, an unreachable
// server or a damaged config exits non-zero with one clear line on
// stderr, and leaves no interface and no process behind. The state dir of
// a failed join then takes a good key.
func TestUpBadInput(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	ns := l.NodeBehind(r1, "n1", "192.168.1.10")
	parts := strings.Split(m.key, "-")
	if len(parts) != 4 {
		t.Fatalf("join key %q: want wire1-<id>-<secret>-<pin>", m.key)
	}
	parts[2] = strings.Repeat("a", len(parts[2]))
	unknown := strings.Join(parts, "-")
	join := func(server, key string) []string {
		return []string{"--server", server, "--join", key, "--name", "n1"}
	}
	tests := []struct {
		name   string
		config string // written to config.json first, if set
		args   []string
		want   string // in the error, case aside
	}{
		{"malformed key", "", join(serverURL, "wire1-nonsense"), "key"},
		{"unknown key", "", join(serverURL, unknown), "key"},
		{"another server's key", "", join(serverURL, newKey(t, m.srvNS, t.TempDir())), ""}, // its pin is not this server's
		{"unreachable server", "", join("https://203.0.113.99:8787", m.key), "203.0.113.99"},
		{"truncated config.json", `{"server_url": "` + serverURL + `", "node_na`, nil, "config"},
		{"empty config.json", "\n", nil, "config"},
	}
	dirs := map[string]string{}
	for _, tt := range tests {
		dir := t.TempDir()
		dirs[tt.name] = dir
		if tt.config != "" {
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		args := append([]string{"up", "--foreground", "--interface", "wire-bad", "--state-dir", dir}, tt.args...)
		start := time.Now()
		_, stderr, err := wireOut(ns, 45*time.Second, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		switch {
		case err == nil:
			t.Errorf("%s: wire up exited 0", tt.name)
		case stderr == "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "wire: "):
			t.Errorf("%s: want one line \"wire: ...\" on stderr; got (%v):\n%s", tt.name, err, stderr)
		case !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(tt.want)):
			t.Errorf("%s: the error %q does not mention %q", tt.name, lines[0], tt.want)
		default:
			t.Logf("%s: after %v: %s", tt.name, time.Since(start).Round(time.Millisecond), lines[0])
		}
		checkNothingLeft(t, tt.name, ns)
	}

	// A failed join leaves nothing that stops a good one.
	n := &node{name: "n1", iface: "wire-n1", dir: dirs["unknown key"], ns: ns}
	n.proc = lab.Start(t, ns, "n1", wireBin, "up", "--foreground", "--server", serverURL, "--join", m.key,
		"--name", "n1", "--interface", n.iface, "--state-dir", n.dir)
	m.waitUp(n)
}

// checkNothingLeft fails the test if a namespace has an interface beside
// lo and eth0, or a process, killing what it finds.
func checkNothingLeft(t *testing.T, what string, ns *lab.NS) {
	t.Helper()
	if out, err := lab.Run(ns, "ip", "link", "show", "wire-bad"); err == nil {
		t.Errorf("%s: wire up left its interface behind:\n%s", what, out)
	}
	out, err := lab.Run(ns, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line) // "5: eth0@if6: <...> ..."
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "lo" && name != "eth0" {
			t.Errorf("%s: an interface is left: %s", what, line)
		}
	}
	pids, err := ns.Pids()
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) > 0 {
		t.Errorf("%s: processes are left in the namespace: %v", what, pids)
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
