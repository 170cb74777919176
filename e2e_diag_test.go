package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/internal/scrape/scrapetest"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/server/servertest"
)

// wire whoami, watchdog and diagnose through the real binary, against a
// daemon whose node expired and has one fresh peer and one stale: each
// prints what its MCP tool returns (--json) or a table, and the last two
// fail while something is wrong. wire up --join on that running node
// sends the key to the daemon to authenticate again.
func TestDiagnosticCommands(t *testing.T) {
	dir := t.TempDir()
	pin := servertest.NewNode(t)
	k := api.NewJoinKey(api.PinOf(pin.Cert.Leaf))
	// A server on loopback that is not there: diagnose tries to reach it.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	cfg := node.Config{ServerURL: "https://" + closed.Addr().String(), ServerPin: k.Pin.String(), NodeName: "me", NodeID: "id-me",
		VPNIP: "10.99.0.1", Subnet: "10.99.0.0/16", ListenPort: 51820, Interface: "wire0", STUNPort: 8788}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	wgKey := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	st := node.Status{NodeName: "me", VPNIP: "10.99.0.1", ServerURL: cfg.ServerURL, Interface: "wire0", Engine: "userspace",
		ListenPort: 51820, ServerReachable: true, WGPublicKey: wgKey, Expired: true, Advice: node.ErrExpired.Error()}
	fresh, old := time.Now().Add(-10*time.Second), time.Now().Add(-10*time.Minute)
	peers := []node.PeerStatus{
		{NodeName: "good", VPNIP: "10.99.0.2", Path: node.PathDirect, LatestHandshake: &fresh},
		{NodeName: "bad", VPNIP: "10.99.0.3", Path: node.PathNone, LatestHandshake: &old},
	}
	var mu sync.Mutex
	var sent string // the key the daemon was given
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"peers": peers})
	})
	mux.HandleFunc("POST /v1/authenticate", func(w http.ResponseWriter, r *http.Request) {
		var req node.AuthenticateRequest
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		mu.Lock()
		defer mu.Unlock()
		sent, st.Expired, st.Advice = req.JoinKey, false, ""
		json.NewEncoder(w).Encode(st)
	})
	fakeDaemon(t, dir, mux)

	var out string
	out, err = wire(t, "whoami", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "66687aad") || !strings.Contains(out, "enrolled") || !strings.Contains(out, "no: this node's enrolment expired") {
		t.Errorf("wire whoami: %v\n%s", err, out)
	}
	var id diag.Identity
	if out, err := wire(t, "whoami", "--json", "--state-dir", dir); err != nil || json.Unmarshal([]byte(out), &id) != nil || id.Enrolled || id.Fingerprint != "66687aad" {
		t.Errorf("wire whoami --json: %v\n%s", err, out)
	}

	out, err = wire(t, "watchdog", "--state-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 peers stale") || !strings.Contains(out, "bad") || !strings.Contains(out, "stale") {
		t.Errorf("wire watchdog: %v\n%s", err, out)
	}
	var w diag.Watchdog
	if out, _ := wire(t, "watchdog", "--json", "--state-dir", dir); json.Unmarshal([]byte(out), &w) != nil || w.Stale != 1 || len(w.Peers) != 2 || w.Service.Daemon != "running" {
		t.Errorf("wire watchdog --json:\n%s", out)
	}

	var d diag.Diagnosis
	out, err = wire(t, "diagnose", "--json", "--state-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "checks failed") || json.Unmarshal([]byte(out), &d) != nil || d.OK {
		t.Fatalf("wire diagnose --json: %v\n%s", err, out)
	}
	for _, ch := range d.Checks {
		if ch.Name == "registered" && (ch.OK || !strings.Contains(ch.Finding, "expired") || !strings.Contains(ch.Fix, "wire up --join KEY")) {
			t.Errorf("diagnose's registered check: %+v", ch)
		}
	}

	out, err = wire(t, "up", "--state-dir", dir, "--join", k.String())
	if err != nil || !strings.Contains(out, "authenticated again: me 10.99.0.1") {
		t.Errorf("wire up --join on an expired running node: %v\n%s", err, out)
	}
	if mu.Lock(); sent != k.String() {
		t.Errorf("the daemon was given the key %q, want %q", sent, k.String())
	}
	mu.Unlock()

	stopped := t.TempDir() // and without a daemon: each says it is not running
	for _, cmd := range []string{"whoami", "watchdog"} {
		if _, err := wire(t, cmd, "--state-dir", stopped); err == nil || !strings.Contains(err.Error(), "not running") {
			t.Errorf("wire %s without a daemon: %v", cmd, err)
		}
	}
}

// wire netcheck through the real binary, against a real server on
// loopback: HTTPS, STUN and the relay's port answer, both UDP ports see
// the same address, this machine's own (no NAT). A server that does not
// answer at all fails it, saying so.
func TestNetcheck(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	k := newKey(t, dir)
	nodeDir := t.TempDir()
	cfg := node.Config{ServerURL: srv.url, ServerPin: k.Pin.String(), NodeName: "me", NodeID: "id-me",
		VPNIP: "10.99.0.1", Subnet: "10.99.0.0/16", ListenPort: 51820, Interface: "wire0"}
	if err := cfg.Save(nodeDir); err != nil {
		t.Fatal(err)
	}
	out, err := wire(t, "netcheck", "--json", "--state-dir", nodeDir)
	var nc diag.Netcheck
	if err != nil || json.Unmarshal([]byte(out), &nc) != nil {
		t.Fatalf("wire netcheck --json: %v\n%s", err, out)
	}
	if !nc.HTTPS.OK || !nc.STUN.OK || !nc.Relay.OK || !nc.UDP || nc.STUN.Addr == nc.Relay.Addr ||
		nc.STUN.Mapped == "" || nc.STUN.Mapped != nc.Relay.Mapped || nc.NAT != diag.NATNone || !strings.Contains(nc.Verdict, "public address") {
		t.Errorf("wire netcheck --json on loopback: %+v", nc)
	}
	if out, err := wire(t, "netcheck", "--state-dir", nodeDir); err != nil || !strings.Contains(out, "answers in") || !strings.Contains(out, "nat    none") {
		t.Errorf("wire netcheck: %v\n%s", err, out)
	}

	srv.kill()
	out, err = wire(t, "netcheck", "--state-dir", nodeDir)
	if err == nil || !strings.Contains(err.Error(), "no UDP answer") || !strings.Contains(out, "cannot be reached") {
		t.Errorf("wire netcheck with the server gone: %v\n%s", err, out)
	}
}

// wire server --metrics-listen: the banner says where, the metrics are
// in Prometheus's text format, and promtool check metrics (Debian's
// prometheus package) finds nothing to fault in them.
func TestServerMetricsPromtool(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, "--metrics-listen", "127.0.0.1:0")
	if !strings.HasPrefix(srv.metrics, "http://127.0.0.1:") {
		t.Fatalf("the banner says metrics at %q", srv.metrics)
	}
	resp, err := http.Get(srv.metrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "wire_server_nodes 0") {
		t.Errorf("metrics:\n%s", body)
	}
	scrapetest.Promtool(t, body)
}

// wire server --ui-listen: the banner says where the dashboard is, and
// it serves its page there, which loads nothing from elsewhere.
func TestServerDashboardListens(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(wireBin, "server", "--state-dir", dir, "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0",
		"--relay-listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := bufio.NewScanner(out)
	var url string
	for url == "" && lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "Dashboard:"); ok {
			url = strings.Fields(u)[0]
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("the banner says the dashboard is at %q", url)
	}
	go io.Copy(io.Discard, out)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<script src="app.js"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET %s: %s, CSP %q\n%s", url, resp.Status, resp.Header.Get("Content-Security-Policy"), page)
	}
	if _, err := wire(t, "server", "--state-dir", t.TempDir(), "--ui-listen", "nonsense"); err == nil || !strings.Contains(err.Error(), "--ui-listen") {
		t.Errorf("--ui-listen nonsense: %v", err)
	}
}
