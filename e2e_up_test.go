package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/server/servertest"
)

// serverNodes returns how many nodes a server (state dir dir) has.
func serverNodes(t *testing.T, srv *serverProc, dir string) int {
	t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: srv.url, Pin: srv.pin, AdminToken: readToken(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Total
}

// TestUpChecksBeforeEnrolling: what wire up needs of the machine is
// checked before the join key is sent, so that a mistake (no sudo, a busy
// port, a mistyped engine) spends nothing and leaves nothing.
func TestUpChecksBeforeEnrolling(t *testing.T) {
	sdir := t.TempDir()
	srv := startServer(t, sdir)
	k := newKey(t, sdir) // single-use
	srv.pin = k.Pin
	type run struct {
		name string
		args []string
		cred *syscall.Credential
		want string
	}
	shared := sharedTempDir(t)
	runs := []run{{"no sudo", nil, nil, "needs root"}}
	if os.Geteuid() == 0 {
		runs[0].cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		busy, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		port := strconv.Itoa(busy.LocalAddr().(*net.UDPAddr).Port)
		runs = append(runs,
			run{"busy port", []string{"--port", port, "--interface", "wire-chk-busy"}, nil, "--port"},
			run{"mistyped engine", []string{"--engine", "kernal"}, nil, `unknown engine kind "kernal"`},
		)
	}
	for i, r := range runs {
		dir := filepath.Join(shared, strconv.Itoa(i))
		os.Mkdir(dir, 0o777)
		os.Chmod(dir, 0o777)
		args := append([]string{"up", "--server", srv.url, "--join", k.String(), "--state-dir", dir}, r.args...)
		cmd := exec.Command(wireBin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		msg := stderr.String()
		if err == nil || !strings.Contains(msg, r.want) || !strings.Contains(msg, "nothing was sent to the server") {
			t.Errorf("%s: wire up: %v\n%s\nwant it to say %q, and that nothing was sent", r.name, err, msg, r.want)
		}
		if _, err := os.Stat(filepath.Join(dir, node.ConfigFile)); err == nil {
			t.Errorf("%s: config.json was written", r.name)
		}
	}
	if n := serverNodes(t, srv, sdir); n != 0 {
		t.Errorf("the server has %d nodes after wire up failed before enrolling", n)
	}
	n := servertest.NewNode(t)
	if _, err := nodeClient(t, srv.url, k, &n).Register(context.Background(), joinReq("later", n, &k)); err != nil {
		t.Errorf("the single-use key after the failed wire ups: %v; want it unspent", err)
	}
}

// TestUpWhenAlreadyUp: wire up on a running node succeeds only if every
// flag says what already is; otherwise it names what differs, and never
// ignores a flag.
func TestUpWhenAlreadyUp(t *testing.T) {
	dir := t.TempDir()
	pin := servertest.NewNode(t) // any key: a pin for the config
	k := api.NewJoinKey(api.PinOf(pin.Cert.Leaf))
	cfg := node.Config{ServerURL: "https://wire.example:8787", ServerPin: k.Pin.String(), NodeName: "me", NodeID: "id-me",
		VPNIP: "10.99.0.1", Subnet: "10.99.0.0/16", ListenPort: 51820, Interface: "wire0", STUNPort: 8788}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	st := node.Status{NodeName: "me", VPNIP: "10.99.0.1", ServerURL: cfg.ServerURL, Interface: "wire0", Engine: "userspace", ListenPort: 51820, ServerReachable: true}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	fakeDaemon(t, dir, mux)
	other := api.NewJoinKey(api.PinOf(servertest.NewNode(t).Cert.Leaf))
	for _, tt := range []struct {
		args []string
		want string // "" for success
	}{
		{nil, ""},
		{[]string{"--name", "ME", "--port", "51820", "--engine", "auto"}, ""},
		{[]string{"--server", cfg.ServerURL, "--join", k.String()}, ""},
		{[]string{"--name", "other"}, "--name other (it runs with me)"},
		{[]string{"--port", "51821"}, "--port 51821"},
		{[]string{"--interface", "wire1"}, "--interface wire1"},
		{[]string{"--engine", "kernel"}, "--engine kernel"},
		{[]string{"--server", "https://elsewhere:8787", "--join", k.String()}, "--server https://elsewhere:8787"},
		{[]string{"--server", cfg.ServerURL, "--join", "bogus"}, "--join: "},
		{[]string{"--server", cfg.ServerURL, "--join", other.String()}, "for another server"},
	} {
		out, err := wire(t, append([]string{"up", "--state-dir", dir}, tt.args...)...)
		switch {
		case tt.want == "" && (err != nil || !strings.Contains(out, "already up")):
			t.Errorf("wire up %v on a running node: %v %s; want success", tt.args, err, out)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("wire up %v on a running node: %v %s; want an error saying %q", tt.args, err, out, tt.want)
		}
	}
}
