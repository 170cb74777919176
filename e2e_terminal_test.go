package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/node"
)

// TestPeerStringsEscaped: what peers say of themselves reaches the
// terminal escaped. A daemon (here a stand-in on the control socket)
// relays it from the server, which a compromised or older server may have
// let through: a node name or endpoint with escape sequences must not
// clear the screen or retitle the terminal of whoever runs wire peers.
func TestPeerStringsEscaped(t *testing.T) {
	dir := t.TempDir()
	evil := "mallory\x1b]0;owned\x07\x1b[2J"
	peers := []node.PeerStatus{{NodeName: evil, VPNIP: "10.99.0.2\x1b[31m", Endpoint: "[fe80::1%\x1b[2J]:51820", Path: "direct", Status: "online"}}
	st := node.Status{NodeName: "me", VPNIP: "10.99.0.1", ServerURL: "https://example\x1b[2J", ServerReachable: true, Peers: peers}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"peers": peers})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	mux.HandleFunc("POST /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(node.PingResult{NodeName: evil, VPNIP: "10.99.0.2", Path: "direct", Sent: 1, Received: 1, Replies: []node.PingReply{{Seq: 1}}})
	})
	fakeDaemon(t, dir, mux)

	for _, args := range [][]string{{"peers"}, {"status"}, {"ping", "--count", "1"}} {
		args := append(args, "--state-dir", dir)
		if args[0] == "ping" {
			args = append(args, "mallory")
		}
		out, err := wire(t, args...)
		if err != nil {
			t.Fatalf("wire %s: %v", args[0], err)
		}
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Errorf("wire %s printed a raw escape sequence:\n%q", args[0], out)
		}
		if !strings.Contains(out, `mallory\x1b]0;owned\a\x1b[2J`) {
			t.Errorf("wire %s does not show the name escaped:\n%s", args[0], out)
		}
	}
	// JSON is for programs: the strings stay as they were, JSON-escaped.
	out, _ := wire(t, "peers", "--json", "--state-dir", dir)
	var got struct{ Peers []node.PeerStatus }
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Peers) != 1 || got.Peers[0].NodeName != evil {
		t.Errorf("wire peers --json: %v %q", err, out)
	}
	if bytes.ContainsAny([]byte(out), "\x1b\x07") {
		t.Errorf("wire peers --json printed a raw escape")
	}
}

// fakeDaemon answers the control API on dir's socket with mux, until the
// test ends: a daemon whose answers the test chooses.
func fakeDaemon(t *testing.T, dir string, mux *http.ServeMux) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, node.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestStatusSaysRemoved: a node its admin removed says so in wire status,
// with how to join again.
func TestStatusSaysRemoved(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(node.Status{NodeName: "me", VPNIP: "10.99.0.1", ServerReachable: true, Removed: true, Advice: node.ErrRemoved.Error()})
	})
	fakeDaemon(t, dir, mux)
	out, err := wire(t, "status", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "this node was removed from the mesh") || !strings.Contains(out, "wire up --server URL --join KEY") {
		t.Errorf("wire status of a removed node: %v\n%s", err, out)
	}
}

// TestStatusWithoutServer: while the server cannot be reached, a peer
// whose tunnel has a fresh handshake shows as up, not as "○ … ?".
func TestStatusWithoutServer(t *testing.T) {
	dir := t.TempDir()
	hs := time.Now().Add(-5 * time.Second)
	st := node.Status{NodeName: "me", VPNIP: "10.99.0.1", Peers: []node.PeerStatus{
		{NodeName: "up", VPNIP: "10.99.0.2", Status: "unknown", LastSeenAgo: -1, Path: node.PathDirect, LatestHandshake: &hs},
		{NodeName: "silent", VPNIP: "10.99.0.3", Status: "unknown", LastSeenAgo: -1, Path: node.PathNone},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	fakeDaemon(t, dir, mux)
	out, err := wire(t, "status", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	line := func(name string) string {
		for _, l := range lines {
			if strings.Contains(l, " "+name+" ") {
				return l
			}
		}
		return ""
	}
	if l := line("up"); !strings.Contains(l, "●") || !strings.Contains(l, "direct") || strings.Contains(l, "?") {
		t.Errorf("a peer whose tunnel answers: %q", l)
	}
	if l := line("silent"); !strings.Contains(l, "○") {
		t.Errorf("a peer with no handshake: %q", l)
	}
	if !strings.Contains(out, "server unreachable") {
		t.Errorf("wire status does not say the server is unreachable:\n%s", out)
	}
}
