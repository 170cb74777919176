//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// The mesh is driven through wire's CLI, as lab/mesh_test.go drives it:
// `wire server`, `wire server key create`, `wire up --foreground`,
// `wire status --json`, `wire peers --json` and `wire ping`.

const (
	serverIP  = "203.0.113.1"
	serverURL = "https://" + serverIP + ":8787"

	upTimeout   = 30 * time.Second // from `wire up` to its "wire up:" line
	cmdTimeout  = 20 * time.Second // any one wire command
	pingTimeout = 5 * time.Second  // one wire ping
	fastPoll    = 20 * time.Millisecond
)

// mesh is a coordination server in a lab, with a reusable join key.
type mesh struct {
	t    lab.T
	bin  string // the wire binary
	srv  *lab.NS
	proc *lab.Proc // wire server, and so the relay
	key  string
}

// startMesh runs `wire server` on a public host and makes a reusable key.
func startMesh(t lab.T, l *lab.Lab, bin string) *mesh {
	m := &mesh{t: t, bin: bin, srv: l.Host("srv", serverIP)}
	dir := t.TempDir()
	p := lab.Start(t, m.srv, "server", bin, "server", "--state-dir", dir, "--listen", serverIP+":8787")
	if _, err := p.WaitLine("HTTP  "+serverURL, 20*time.Second); err != nil {
		t.Fatalf("wire server: %v", err)
	}
	m.proc = p
	out, err := runWire(context.Background(), m.srv, bin, cmdTimeout, "server", "key", "create", "--state-dir", dir, "--reusable")
	if err != nil {
		t.Fatalf("%v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	m.key = strings.TrimSpace(lines[len(lines)-1])
	return m
}

// node is one `wire up` daemon.
type node struct {
	name, dir string
	ns        *lab.NS
	proc      *lab.Proc
	vpnIP     string
	bin       string
}

// join starts `wire up --foreground` in the namespace with the mesh's key,
// an interface and a state dir of its own; it does not wait.
func (m *mesh) join(ns *lab.NS, name string) *node {
	n := &node{name: name, dir: m.t.TempDir(), ns: ns, bin: m.bin}
	n.proc = lab.Start(m.t, ns, name, m.bin, "up", "--foreground", "--server", serverURL, "--join", m.key,
		"--name", name, "--interface", "wire-"+name, "--state-dir", n.dir)
	return n
}

// waitUp waits for the daemon's "wire up: NAME VPNIP on IFACE" line and
// returns when it saw it.
func (n *node) waitUp(ctx context.Context) (time.Time, error) {
	line, at, err := waitLine(ctx, n.proc, "wire up: ", upTimeout)
	if err != nil {
		return at, err
	}
	f := strings.Fields(line)
	if len(f) < 4 {
		return at, fmt.Errorf("%s: unexpected line %q", n.name, line)
	}
	if _, err := netip.ParseAddr(f[3]); err != nil {
		return at, fmt.Errorf("%s: no VPN IP in %q", n.name, line)
	}
	n.vpnIP = f[3]
	return at, nil
}

// waitLine polls a process's log every few milliseconds for a line with
// substr, and returns it with the time it was first seen.
func waitLine(ctx context.Context, p *lab.Proc, substr string, timeout time.Duration) (string, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		exited := p.Exited() // before reading, so that a last line is seen
		for _, line := range strings.Split(p.Output(), "\n") {
			if strings.Contains(line, substr) {
				return line, time.Now(), nil
			}
		}
		if exited {
			return "", time.Now(), fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.Name, p.Wait(0), substr, p.Tail(10))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", time.Now(), fmt.Errorf("%s printed no %q within %v (%v)", p.Name, substr, timeout, ctx.Err())
}

// peer is what `wire status --json` and `wire peers --json` say of a peer.
type peer struct {
	NodeName string `json:"node_name"`
	Path     string `json:"path"`
	Endpoint string `json:"endpoint"`
}

// peers runs `wire status --json` (the server's node list, joined with
// WireGuard's state) or `wire peers --json` (the peers the daemon has
// configured WireGuard with), and returns the peers by name.
func (n *node) peers(ctx context.Context, command string) (map[string]peer, error) {
	out, err := runWire(ctx, n.ns, n.bin, cmdTimeout, command, "--json", "--state-dir", n.dir)
	if err != nil {
		return nil, err
	}
	var v struct{ Peers []peer }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("%s: wire %s --json: %v: %s", n.name, command, err, out)
	}
	m := map[string]peer{}
	for _, p := range v.Peers {
		m[p.NodeName] = p
	}
	return m, nil
}

// ping runs `wire ping --count 1` to a peer.
func (n *node) ping(ctx context.Context, target string) error {
	_, err := runWire(ctx, n.ns, n.bin, pingTimeout, "ping", "--state-dir", n.dir, "--count", "1", target)
	return err
}

// runWire runs the binary in a namespace for at most timeout and returns
// its stdout; the error has its stderr.
func runWire(ctx context.Context, ns *lab.NS, bin string, timeout time.Duration, args ...string) (string, error) {
	out, err := runIn(ctx, ns, timeout, append([]string{bin}, args...)...)
	if err != nil {
		return out, fmt.Errorf("in %s: wire %s: %w", ns, strings.Join(args, " "), err)
	}
	return out, nil
}

// waitPairs waits until every ordered pair of nodes pings over the VPN.
func waitPairs(ctx context.Context, timeout time.Duration, nodes ...*node) error {
	pending := map[[2]*node]bool{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				pending[[2]*node{a, b}] = true
			}
		}
	}
	return lab.Poll(timeout, 100*time.Millisecond, func() error {
		if ctx.Err() != nil {
			return lab.Abort(ctx.Err())
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for pair := range pending {
			wg.Go(func() {
				if pair[0].ns.Ping(pair[1].vpnIP) == nil {
					mu.Lock()
					delete(pending, pair)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(pending) > 0 {
			return fmt.Errorf("%d ordered pairs do not ping over the VPN yet", len(pending))
		}
		return nil
	})
}

// joinToPing starts `wire up` for a fresh node and times it until from's
// `wire ping` to it is answered, polling as TestMeshJoinToPing does.
func (m *mesh) joinToPing(ctx context.Context, ns *lab.NS, name string, from *node) (*node, time.Duration, error) {
	start := time.Now()
	n := m.join(ns, name)
	err := lab.Poll(30*time.Second, 100*time.Millisecond, func() error {
		if ctx.Err() != nil {
			return lab.Abort(ctx.Err())
		}
		if n.proc.Exited() {
			return lab.Abort(fmt.Errorf("wire up exited: %v", n.proc.Wait(0)))
		}
		return from.ping(ctx, name)
	})
	took := time.Since(start)
	if err != nil {
		return n, took, fmt.Errorf("%s never pinged the new node %s: %w", from.name, name, err)
	}
	_, err = n.waitUp(ctx)
	return n, took, err
}

// propagation is when the mesh learnt of one new node, each time from the
// start of its `wire up`.
type propagation struct {
	up     time.Duration   // the new node printed "wire up:"
	server time.Duration   // `wire status` on an existing node first listed it: the server has it
	final  []time.Duration // by existing node: its `wire peers` listed it at its public mapping
}

// last is when the last existing node had the new peer at its mapping.
func (p propagation) last() time.Duration { return slices.Max(p.final) }

// propagate starts `wire up` for a fresh node and polls, every fastPoll,
// `wire peers` on every existing node and `wire status` on the first,
// until each has the new node at the endpoint its STUN mapping gives.
func (m *mesh) propagate(ctx context.Context, ns *lab.NS, name string, existing []*node) (*node, propagation, error) {
	ctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	p := propagation{final: make([]time.Duration, len(existing))}
	errs := make([]error, len(existing)+2)
	var target atomic.Pointer[string] // the new node's public mapping, once it is up
	start := time.Now()
	n := m.join(ns, name)
	var wg sync.WaitGroup
	for i, e := range existing {
		wg.Go(func() {
			errs[i] = pollFast(ctx, func() (bool, error) {
				peers, err := e.peers(ctx, "peers")
				got, ok := peers[name]
				if t := target.Load(); ok && t != nil && got.Endpoint == *t {
					p.final[i] = time.Since(start)
					return true, nil
				}
				return false, err
			})
		})
	}
	wg.Go(func() {
		errs[len(existing)] = pollFast(ctx, func() (bool, error) {
			peers, err := existing[0].peers(ctx, "status")
			_, ok := peers[name]
			if ok {
				p.server = time.Since(start)
			}
			return ok, err
		})
	})
	at, err := n.waitUp(ctx)
	p.up = at.Sub(start)
	if err == nil {
		var mapping string
		mapping, err = n.mapping(ctx)
		target.Store(&mapping)
	}
	errs[len(existing)+1] = err
	if err != nil {
		cancel()
	}
	wg.Wait()
	return n, p, errors.Join(errs...)
}

// mapping is the node's public address and port, as its STUN discovery
// found them and `wire status` reports them: where its peers send.
func (n *node) mapping(ctx context.Context) (string, error) {
	out, err := runWire(ctx, n.ns, n.bin, cmdTimeout, "status", "--json", "--state-dir", n.dir)
	if err != nil {
		return "", err
	}
	var st struct {
		PublicIP string `json:"public_ip"`
		NATPort  uint16 `json:"nat_port"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return "", fmt.Errorf("%s: wire status --json: %v", n.name, err)
	}
	ip, err := netip.ParseAddr(st.PublicIP)
	if err != nil || st.NATPort == 0 {
		return "", fmt.Errorf("%s: wire status shows no public mapping: %s:%d", n.name, st.PublicIP, st.NATPort)
	}
	return netip.AddrPortFrom(ip, st.NATPort).String(), nil
}

// pollFast calls f every fastPoll until it reports done, fails, or ctx
// ends.
func pollFast(ctx context.Context, f func() (bool, error)) error {
	for {
		done, err := f()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(fastPoll):
		}
	}
}
