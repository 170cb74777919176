package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
	"github.com/wire-mesh/wire/stun"
)

// wireBin is the real binary, built once by TestMain.
var wireBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wire-e2e")
	if err != nil {
		panic(err)
	}
	wireBin = filepath.Join(dir, "wire")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=v0.0.0-e2e", "-o", wireBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building wire: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wire runs the binary to completion and returns its stdout.
func wire(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return wireEnv(t, "", nil, args...)
}

// serverProc is a `wire server` process.
type serverProc struct {
	cmd      *exec.Cmd
	url      string
	stunAddr string
	metrics  string // the metrics URL, with --metrics-listen
	pin      api.Pin
	done     chan error
}

var (
	bannerHTTP    = regexp.MustCompile(`HTTP\s+(\S+)`)
	bannerSTUN    = regexp.MustCompile(`STUN\s+udp\s+(\S+)`)
	bannerMetrics = regexp.MustCompile(`METRICS\s+(\S+)`)
)

// startServer runs `wire server` on loopback ports of its own choosing and
// waits for its banner. It is killed when the test ends.
func startServer(t *testing.T, dir string, extra ...string) *serverProc {
	t.Helper()
	return startServerEnv(t, nil, dir, extra...)
}

// startServerEnv is startServer with env added to the server's environment.
func startServerEnv(t *testing.T, env []string, dir string, extra ...string) *serverProc {
	t.Helper()
	args := append([]string{"server", "--state-dir", dir, "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(wireBin, args...)
	cmd.Env = append(os.Environ(), env...)
	return startServerCmd(t, cmd)
}

// startServerCmd starts cmd, which runs wire server, and waits for its
// banner. It is killed when the test ends.
func startServerCmd(t *testing.T, cmd *exec.Cmd) *serverProc {
	t.Helper()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() { p.kill() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "  state") { // the banner's lines before it
		if m := bannerHTTP.FindStringSubmatch(lines.Text()); m != nil {
			p.url = m[1]
		}
		if m := bannerSTUN.FindStringSubmatch(lines.Text()); m != nil {
			p.stunAddr = m[1]
		}
		if m := bannerMetrics.FindStringSubmatch(lines.Text()); m != nil {
			p.metrics = m[1]
		}
	}
	go io.Copy(io.Discard, stdout)
	go func() { p.done <- cmd.Wait() }()
	if p.url == "" {
		t.Fatalf("wire server printed no banner")
	}
	return p
}

func (p *serverProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil // later kills return at once
}

// newKey runs `wire server key create` and returns the key on its last line.
func newKey(t *testing.T, dir string, args ...string) api.JoinKey {
	t.Helper()
	out, err := wire(t, append([]string{"server", "key", "create", "--state-dir", dir}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	k, err := api.ParseJoinKey(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("last line of key create output %q: %v", out, err)
	}
	return k
}

// storedNodes is what `wire server nodes --json` with args lists.
func storedNodes(t *testing.T, args ...string) []api.NodeStatus {
	t.Helper()
	out, err := wire(t, append([]string{"server", "nodes", "--json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []api.NodeStatus
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// storedAddresses are the stored nodes' VPN addresses, by name.
func storedAddresses(t *testing.T, args ...string) map[string]string {
	t.Helper()
	stored := map[string]string{}
	for _, n := range storedNodes(t, args...) {
		stored[n.NodeName] = n.VPNIP
	}
	return stored
}

func nodeClient(t *testing.T, url string, k api.JoinKey, n *servertest.Node) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: url, Pin: k.Pin, Cert: &n.Cert})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func joinReq(name string, n servertest.Node, k *api.JoinKey) api.RegisterRequest {
	req := api.RegisterRequest{NodeID: "id-" + name, NodeName: name, WGPublicKey: n.WGKey, Port: 51820, NATPort: 51820}
	if k != nil {
		req.JoinKey = k.String()
	}
	return req
}

func TestBinaryEndToEnd(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	k := newKey(t, dir) // while the server runs
	if !strings.HasPrefix(srv.url, "https://") {
		t.Fatalf("server URL %s is not https", srv.url)
	}
	a, b := servertest.NewNode(t), servertest.NewNode(t)
	ca := nodeClient(t, srv.url, k, &a)
	resp, err := ca.Register(ctx, joinReq("alpha", a, &k))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodeClient(t, srv.url, k, &b).Register(ctx, joinReq("beta", b, &k)); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use of a single-use key: %v", err)
	}
	k2 := newKey(t, dir, "--reusable", "--ttl", "1h")
	cb := nodeClient(t, srv.url, k2, &b)
	if _, err := cb.Register(ctx, joinReq("beta", b, &k2)); err != nil {
		t.Fatal(err)
	}
	// STUN answers with the address we sent from.
	conn, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer conn.Close()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	stunAddr, _ := net.ResolveUDPAddr("udp", srv.stunAddr)
	mapped, err := stun.Query(sctx, conn, stunAddr)
	if err != nil || mapped.String() != conn.LocalAddr().String() {
		t.Errorf("STUN: %v, %v; want %v", mapped, err, conn.LocalAddr())
	}
	// `wire server nodes` lists both.
	out, err := wire(t, "server", "nodes", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "alpha") || !strings.Contains(out, resp.VPNIP) || !strings.Contains(out, "beta") {
		t.Errorf("wire server nodes: %v\n%s", err, out)
	}
	// Removing beta while the server runs: beta's peers learn it within a
	// second, and beta's credentials stop working.
	peers, err := ca.Peers(ctx, "0", 0)
	if err != nil || len(peers.Peers) != 2 {
		t.Fatalf("peers: %+v, %v", peers, err)
	}
	got := make(chan api.PeersResponse, 1)
	go func() {
		r, _ := ca.Peers(ctx, peers.Version, 10*time.Second)
		got <- r
	}()
	removed := time.Now()
	// Names are unique in any case, and so removal matches in any case.
	if out, err := wire(t, "server", "node", "remove", "--state-dir", dir, "BeTa"); err != nil || !strings.Contains(out, "removed beta") {
		t.Fatalf("node remove: %v %s", err, out)
	}
	delta := <-got
	if lag := time.Since(removed); lag > 1500*time.Millisecond || len(delta.Removed) != 1 || delta.Removed[0] != "id-beta" {
		t.Errorf("removal reached alpha after %v as %+v", lag, delta)
	}
	if _, err := cb.Status(ctx); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("removed node's request: %v, want refused as not enrolled", err)
	}
	if _, err := wire(t, "server", "node", "remove", "--state-dir", dir, "nobody"); err == nil || !strings.Contains(err.Error(), `no node named "nobody"`) {
		t.Errorf("removing an unknown node: %v", err)
	}
}

func TestBusyboxDispatch(t *testing.T) {
	link := filepath.Join(t.TempDir(), "wire-server")
	if err := os.Symlink(wireBin, link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "wire server - run the coordination server (HTTP API, STUN, relay)") {
		t.Errorf("wire-server --help: %v\n%s", err, out)
	}
	dir := t.TempDir()
	out, err = exec.Command(link, "key", "create", "--state-dir", dir).Output()
	if err != nil || !strings.Contains(string(out), "wire1-") {
		t.Errorf("wire-server key create: %v\n%s", err, out)
	}
}

func TestVersionAndHelp(t *testing.T) {
	out, err := wire(t, "version")
	if err != nil || !strings.HasPrefix(out, "wire v0.0.0-e2e ") {
		t.Errorf("wire version = %q, %v", out, err)
	}
	for _, args := range [][]string{
		{"--help"}, {"server", "--help"}, {"server", "key", "--help"}, {"server", "key", "create", "--help"},
		{"server", "nodes", "--help"}, {"server", "node", "--help"}, {"server", "node", "remove", "--help"}, {"version", "--help"},
		{"up", "--help"}, {"status", "--help"}, {"peers", "--help"}, {"ping", "--help"}, {"down", "--help"}, {"install", "--help"},
	} {
		out, err := wire(t, args...)
		if err != nil || !strings.Contains(out, "USAGE") {
			t.Errorf("wire %v: %v\n%s", args, err, out)
		}
		// Each option's line reads as written: no backquoted words taken
		// for its value's name, one default at most.
		for _, line := range strings.Split(out, "\n") {
			if strings.Count(line, "(default:") > 1 || strings.Contains(line, "-j wire server") || strings.Contains(line, "default: one node") {
				t.Errorf("wire %v: %q", args, line)
			}
		}
	}
}

// Arguments a command does not take, and commands that do not exist, are
// refused with what to do, never ignored.
func TestUnexpectedArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "extra", "--json"}, `status: unexpected argument "extra"`},
		{[]string{"peers", "--state-dir", dir, "x"}, `peers: unexpected argument "x"`},
		{[]string{"down", "now"}, `down: unexpected argument "now"`},
		{[]string{"install", "please"}, `install: unexpected argument "please"`},
		{[]string{"version", "2"}, `version: unexpected argument "2"`},
		{[]string{"server", "nodes", "all"}, `server nodes: unexpected argument "all"`},
		{[]string{"server", "key", "create", "--state-dir", dir, "now"}, `server key create: unexpected argument "now"`},
		{[]string{"up", "extra"}, `up: unexpected argument "extra"`},
		{[]string{"bogus"}, "bogus: no such command (see wire --help)"},
		{[]string{"server", "key", "bogus"}, "bogus: no such command (see wire server key --help)"},
	} {
		_, err := wire(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("wire %v: %v, want it to say %q", tt.args, err, tt.want)
		}
	}
}

// Without a daemon, the node commands say what to do.
func TestNodeCommandsWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"status"}, {"peers"}, {"ping"}, {"down"}} {
		args = append(args, "--state-dir", dir)
		if args[0] == "ping" {
			args = append(args, "n1")
		}
		_, err := wire(t, args...)
		if err == nil || !strings.Contains(err.Error(), "not running") || !strings.Contains(err.Error(), "wire up") {
			t.Errorf("wire %v without a daemon: %v", args, err)
		}
	}
	if _, err := wire(t, "up", "--state-dir", dir); err == nil || !strings.Contains(err.Error(), "has not joined a mesh") {
		t.Errorf("wire up with no config: %v", err)
	}
	out, err := wire(t, "install", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "config") || !strings.Contains(out, "--join KEY") {
		t.Errorf("wire install: %v\n%s", err, out)
	}
}

func TestServerErrors(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	srv.kill()
	os.Truncate(filepath.Join(dir, "wire.db"), 0)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"server", "--state-dir", dir, "--listen", "127.0.0.1:0"}, "damaged"},
		{[]string{"server", "--state-dir", t.TempDir(), "--subnet", "10.99.0.1/16"}, "host bits"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "0s"}, "--ttl"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "1ns"}, "want a duration from 1m"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "59s"}, "want a duration from 1m"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "8761h"}, "want a duration from 1m"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "366d"}, "want a duration from 1m"},
		{[]string{"server", "key", "create", "--state-dir", t.TempDir(), "--ttl", "2y"}, "want a duration such as 30m, 24h or 7d"},
		{[]string{"server", "nodes", "--state-dir", t.TempDir()}, "no wire server state"},
		{[]string{"server", "node", "remove", "--state-dir", t.TempDir()}, "usage"},
		{[]string{"server", "node", "remove", "beta", "--state-dir", dir}, "options go before the argument"},
		{[]string{"ping", "n1", "--count", "2"}, "options go before the argument: wire ping --count 2 n1"},
		{[]string{"server", "--trusted-proxy", "nope"}, "--trusted-proxy"},
		{[]string{"server", "--state-dir", t.TempDir(), "--relay-rate", "fast"}, "--relay-rate: \"fast\": want bits per second"},
	}
	for _, tt := range tests {
		_, err := wire(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("wire %v: err = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
}

// TestCrashDuringEnrolment kills the server with SIGKILL at random moments
// while nodes enrol, many times, and checks after each restart that every
// enrolment the server acknowledged is still there.
func TestCrashDuringEnrolment(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	k := newKey(t, dir, "--reusable")
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[string]string{}
	seq := 0
	for round := range 12 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					seq++
					name := fmt.Sprintf("c%d", seq)
					mu.Unlock()
					n := servertest.NewNode(t)
					c := nodeClient(t, srv.url, k, &n)
					resp, err := c.Register(ctx, joinReq(name, n, &k))
					c.CloseIdle()
					if err != nil {
						continue // the server died mid-request: not acknowledged
					}
					mu.Lock()
					acked[name] = resp.VPNIP
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(50+round*37%200) * time.Millisecond)
		srv.kill()
		close(stop)
		wg.Wait()
		srv = startServer(t, dir) // must start: the store is never left unreadable
	}
	srv.kill()
	stored := storedAddresses(t, "--state-dir", dir)
	if len(acked) < 20 {
		t.Fatalf("only %d enrolments were acknowledged: the test did not exercise the server", len(acked))
	}
	for name, ip := range acked {
		if stored[name] != ip {
			t.Errorf("acknowledged enrolment %s (%s) is %q after the crashes", name, ip, stored[name])
		}
	}
	t.Logf("%d acknowledged enrolments survived 12 SIGKILLs (%d stored)", len(acked), len(stored))
}
