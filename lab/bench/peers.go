//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/lab"
	"github.com/wire-mesh/wire/server"
)

// One real daemon (`wire up`) in a mesh of N peers: how long it takes to
// configure them, its memory, its CPU while nothing changes, and its CPU
// per peer change. The peers are imported into an --open server from a
// meshpop-wire state.json (so no N processes are needed); their endpoints
// are an address on the lab's internet that nobody holds, so WireGuard's
// handshakes and wire's probes to them go unanswered, as to peers that
// are off. The changes are heartbeats that move a random peer's nat_port,
// sent from a helper in the server's namespace (this binary, run with
// -beat).
//
//	go run ./lab/bench -peers 1000,10000 [-changes 200]   (as root)

// peersResult is what one daemon with n peers measured.
type peersResult struct {
	engine    string
	n         int
	listed    int           // peers the daemon had configured
	configure time.Duration // from the daemon's start until it had them all
	mem       lab.Memory    // after the idle period
	idleCPU   float64       // share of a core while idle
	idleFor   time.Duration
	changes   int
	perChange time.Duration // CPU per change, over the changes' window
	applied   bool          // the last change reached the daemon's engine
}

const (
	peersServerIP = "203.0.113.1"
	peersNodeIP   = "203.0.113.40"
	// peersEndpoint is where every imported peer says it is: on the lab's
	// internet, held by nobody.
	peersEndpoint = "203.0.113.200"
	peersIdle     = 30 * time.Second
	peersSync     = 3 * time.Minute
	changesPerSec = 20
)

// measurePeers runs one daemon per engine and n, each in a lab of its own.
func measurePeers(ctx context.Context, b *bench, h host, ns []int, engines []string, changes int) []peersResult {
	var out []peersResult
	for _, engine := range engines {
		for _, n := range ns {
			b.Logf("a %s daemon with %d peers", engine, n)
			out = append(out, measureDaemon(ctx, b, h, engine, n, changes))
		}
	}
	return out
}

func measureDaemon(ctx context.Context, b *bench, h host, engine string, n, changes int) peersResult {
	res := peersResult{engine: engine, n: n, changes: changes}
	l := lab.New(b)
	srv := l.Host("srv", peersServerIP)
	dir := b.TempDir()
	seed := filepath.Join(dir, "state.json")
	must(b, writeSeed(seed, n))
	url := "http://" + peersServerIP + ":8787"
	p := lab.Start(b, srv, "server", h.wire, "server", "--open", "--import", seed, "--state-dir", filepath.Join(dir, "server"), "--listen", peersServerIP+":8787")
	if _, err := p.WaitLine("HTTP  "+url, 60*time.Second); err != nil {
		b.Fatalf("wire server: %v", err)
	}
	nodeNS := l.Host("peers", peersNodeIP)
	d := &node{name: "bench", dir: b.TempDir(), ns: nodeNS, bin: h.wire}
	start := time.Now()
	// An interface name of its own: the UAPI socket's path is shared by
	// every namespace.
	d.proc = lab.Start(b, nodeNS, "bench", h.wire, "up", "--foreground", "--server", url, "--name", "bench",
		"--interface", fmt.Sprintf("wire-b%d", n), "--state-dir", d.dir, "--engine", engine)
	_, err := d.waitUp(ctx)
	must(b, err)
	deadline := time.Now().Add(peersSync)
	for res.listed < n {
		if time.Now().After(deadline) {
			b.Fatalf("the daemon configured %d of %d peers in %v", res.listed, n, peersSync)
		}
		sleep(ctx, b, time.Second)
		peers, err := d.peers(ctx, "peers")
		must(b, err)
		res.listed = len(peers)
	}
	res.configure = time.Since(start)

	pid := d.proc.Pid()
	sleep(ctx, b, 5*time.Second) // the first handshakes and probes
	c0, err := lab.CPUTime(pid)
	must(b, err)
	t0 := time.Now()
	sleep(ctx, b, peersIdle)
	c1, err := lab.CPUTime(pid)
	must(b, err)
	res.idleFor = time.Since(t0)
	res.idleCPU = float64(c1-c0) / float64(res.idleFor)
	res.mem, err = lab.ReadMemory(pid)
	must(b, err)

	self, err := os.Executable()
	must(b, err)
	t1 := time.Now()
	out, err := runIn(ctx, srv, 2*time.Minute, self, "-beat", url, "-beat-file", seed, "-changes", strconv.Itoa(changes))
	if err != nil {
		b.Fatalf("the heartbeats: %v", err)
	}
	last := strings.TrimSpace(out) // "NODE_ID NAT_PORT" of the last change
	sleep(ctx, b, time.Second)     // the last change on its way
	c2, err := lab.CPUTime(pid)
	must(b, err)
	// The window's idle share is not the changes' doing.
	busy := float64(c2-c1) - res.idleCPU*float64(time.Since(t1))
	res.perChange = time.Duration(max(busy, 0) / float64(changes))
	res.applied = d.hasEndpoint(ctx, b, last)
	if err := d.proc.Stop(10 * time.Second); err != nil {
		b.Errorf("stopping the daemon: %v", err)
	}
	return res
}

// hasEndpoint says whether the daemon's WireGuard has the peer of the
// given "NODE_ID NAT_PORT" at that port.
func (n *node) hasEndpoint(ctx context.Context, b *bench, last string) bool {
	id, port, _ := strings.Cut(last, " ")
	out, err := runWire(ctx, n.ns, n.bin, cmdTimeout, "peers", "--json", "--state-dir", n.dir)
	must(b, err)
	var v struct {
		Peers []struct {
			NodeID   string `json:"node_id"`
			Endpoint string `json:"endpoint"`
		}
	}
	must(b, json.Unmarshal([]byte(out), &v))
	for _, p := range v.Peers {
		if p.NodeID == id {
			return strings.HasSuffix(p.Endpoint, ":"+port)
		}
	}
	return false
}

// runIn runs a command in a namespace for at most timeout and returns its
// stdout; the error has its stderr.
func runIn(ctx context.Context, ns *lab.NS, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := lab.Command(ctx, ns, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(e.String()))
	}
	return o.String(), nil
}

// writeSeed writes a state.json of n online nodes.
func writeSeed(path string, n int) error {
	nodes := make([]server.SeedNode, n)
	now := float64(time.Now().Unix())
	for i := range nodes {
		key := make([]byte, 32)
		rand.Read(key)
		id := fmt.Sprintf("p%05d", i)
		nodes[i] = server.SeedNode{
			NodeID: id, NodeName: id, VPNIP: fmt.Sprintf("10.99.%d.%d", 1+i/250, 1+i%250),
			WGPublicKey: base64.StdEncoding.EncodeToString(key), PublicIP: peersEndpoint,
			Port: 51820, NATPort: 20000 + i, LastSeen: now,
		}
	}
	b, err := json.Marshal(map[string]any{"nodes": nodes})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// beat is the helper run with -beat: changes heartbeats, changesPerSec a
// second, each moving a random node of the seed file to a new nat_port.
// It prints the last one's node id and port.
func beat(url, seedFile string, changes int) error {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return err
	}
	var st struct{ Nodes []server.SeedNode }
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if len(st.Nodes) == 0 || changes < 1 {
		return fmt.Errorf("nothing to change")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second / changesPerSec)
	defer tick.Stop()
	var last string
	for i := range changes {
		<-tick.C
		nd := st.Nodes[mrand.IntN(len(st.Nodes))]
		port := 40000 + i%math.MaxInt16
		body, _ := json.Marshal(api.RegisterRequest{NodeID: nd.NodeID, NodeName: nd.NodeName, WGPublicKey: nd.WGPublicKey, Port: nd.Port, NATPort: port})
		resp, err := c.Post(url+api.PathRegister, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("heartbeat of %s: %s", nd.NodeID, resp.Status)
		}
		last = fmt.Sprintf("%s %d", nd.NodeID, port)
	}
	fmt.Println(last)
	return nil
}

// printPeers writes the table of the daemons with many peers.
func printPeers(w io.Writer, h host, res []peersResult) {
	fmt.Fprintf(w, "wire bench: one daemon with many peers\n%s\n", h)
	fmt.Fprintln(w, "| engine | peers | configured in | RSS (peak) | CPU, idle | CPU per peer change | last change applied |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range res {
		fmt.Fprintf(w, "| %s | %d | %.1f s | %d MiB (%d) | %.1f%% of a core | %.2f ms | %t |\n",
			r.engine, r.n, r.configure.Seconds(), r.mem.RSS>>20, r.mem.HWM>>20, 100*r.idleCPU,
			float64(r.perChange)/float64(time.Millisecond), r.applied)
	}
	fmt.Fprintf(w, `
Each row: a fresh lab; a wire server --open holding N imported peers, all online, whose endpoints
(%s) nobody holds, so handshakes and probes go unanswered; one wire up joining it. Configured in:
from starting wire up until wire peers lists all N. RSS: VmRSS / VmHWM after %v idle. CPU, idle:
utime+stime over those %v (WireGuard's keepalives and handshake attempts to every peer, wire's
probes within their budget). CPU per peer change: %d heartbeats moving random peers, %d a
second, the daemon's CPU over them less its idle share, divided by their number.
`, peersEndpoint, peersIdle, peersIdle, res[0].changes, changesPerSec)
}
