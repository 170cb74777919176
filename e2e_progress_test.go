package main

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// wire up shows its join's progress on a terminal, and never on a pipe.
// The server is a closed port on loopback, so the join fails after its
// first step and nothing is brought up on this host.
func TestUpProgressOnlyOnATerminal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("wire up checks for root before it joins, so its progress needs root: skipping")
	}
	script, err := exec.LookPath("script") // util-linux's: runs a command on a pseudo-terminal
	if err != nil {
		t.Skip("no script command (util-linux) to run wire up on a terminal: skipping")
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)
	udp.Close()
	k := api.NewJoinKey(api.PinOf(servertest.NewNode(t).Cert.Leaf))
	args := []string{"up", "--server", "https://" + addr, "--join", k.String(), "--state-dir", t.TempDir(), "--port", port, "--interface", "wprog0"}

	_, err = wire(t, args...)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("wire up against a closed port: %v", err)
	}
	if strings.ContainsAny(err.Error(), "\r\x1b") {
		t.Errorf("wire up wrote progress to a pipe: %q", err.Error())
	}

	line := wireBin + " " + strings.Join(args, " ")
	out, _ := exec.Command(script, "-qec", line, "/dev/null").CombinedOutput()
	if !strings.Contains(string(out), "\r\x1b[Kwire up: reaching https://"+addr+" and checking its key…") || !strings.Contains(string(out), "\r\x1b[K") {
		t.Errorf("wire up on a terminal shows no progress:\n%q", out)
	}
}
