//go:build linux

package lab_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// TestServicesUnderSystemd installs the server and the node as services
// on a machine whose init is a real systemd, as a user would: the
// server's Type=notify start, its sandbox, Restart=always after a crash, a
// failed reinstall rolled back to the running unit, and the node's
// service brought up by wire up and stopped by wire down.
func TestServicesUnderSystemd(t *testing.T) {
	requireWire(t)
	if err := lab.CheckSystemd(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: it must run)", err)
		}
		t.Skipf("%v: skipping", err)
	}
	box := lab.BootSystemd(t, wireBin)
	run := func(args ...string) string {
		t.Helper()
		out, err := box.Run(cmdTimeout, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	state := func(unit string) string {
		out, _ := box.Run(cmdTimeout, "systemctl", "is-active", unit)
		return strings.TrimSpace(out)
	}
	run("ip", "link", "set", "lo", "up")
	// The box is a fresh machine: whatever wire state or units the host
	// has, none of it is here (a host where the quick start ran has them).
	if out, err := box.Run(cmdTimeout, "sh", "-c", "ls -d /etc/wire /var/lib/wire /etc/systemd/system/wire*.service 2>/dev/null"); strings.TrimSpace(out) != "" {
		t.Fatalf("the box sees the host's wire state: %s (%v)", out, err)
	}

	out := run("wire", "server", "install-service")
	if !strings.Contains(out, "installed /etc/systemd/system/wire-server.service and started it") {
		t.Errorf("install-service said:\n%s", out)
	}
	if s := state("wire-server"); s != "active" {
		t.Fatalf("wire-server is %s after install-service", s)
	}
	lines := strings.Split(strings.TrimSpace(run("wire", "server", "key", "create")), "\n")
	key := lines[len(lines)-1]

	out = run("wire", "up", "--server", "https://127.0.0.1:8787", "--join", key, "--name", "box")
	if !strings.HasPrefix(out, "wire is up: box 10.99.") || state("wire") != "active" {
		t.Fatalf("wire up: %s; wire.service %s", out, state("wire"))
	}
	if out := run("wire", "status"); !strings.Contains(out, "1 online / 0 offline / 1 total") {
		t.Errorf("wire status:\n%s", out)
	}

	// Killed, the server is back within RestartSec (5 s).
	pid := strings.TrimSpace(run("systemctl", "show", "-p", "MainPID", "--value", "wire-server"))
	run("kill", "-9", pid)
	deadline := time.Now().Add(15 * time.Second)
	for {
		again := strings.TrimSpace(run("systemctl", "show", "-p", "MainPID", "--value", "wire-server"))
		if again != pid && again != "0" && state("wire-server") == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wire-server not restarted 15s after SIGKILL: %s", state("wire-server"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A reinstall whose server cannot start (its port is taken) fails,
	// says why, and leaves the running unit in place.
	run("systemd-run", "--unit=holder", "wire", "server", "--state-dir", "/var/lib/holder",
		"--listen", "127.0.0.1:9787", "--stun-listen", "127.0.0.1:9790", "--relay-listen", "127.0.0.1:9791")
	out, err := box.Run(cmdTimeout, "wire", "server", "install-service", "--listen", ":9787")
	for _, want := range []string{"address already in use", "the previous unit is back and running"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("install-service on a taken port: %v; want %q in:\n%s", err, want, out)
		}
	}
	if unit := run("cat", "/etc/systemd/system/wire-server.service"); strings.Contains(unit, "9787") || state("wire-server") != "active" {
		t.Errorf("after the failed reinstall, wire-server is %s with:\n%s", state("wire-server"), unit)
	}
	if out := run("wire", "status"); !strings.Contains(out, "1 online") {
		t.Errorf("the node lost the server after the failed reinstall:\n%s", out)
	}

	out = run("wire", "down")
	if strings.TrimSpace(out) != "wire is down (service stopped)" || state("wire") != "inactive" {
		t.Errorf("wire down: %q; wire.service %s", out, state("wire"))
	}
	if out, err := box.Run(cmdTimeout, "ip", "link", "show", "wire0"); err == nil {
		t.Errorf("wire0 is still there after wire down:\n%s", out)
	}

	// None of it reached this machine.
	for _, path := range []string{"/etc/systemd/system/wire-server.service", "/etc/systemd/system/wire.service", "/var/lib/holder"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("the box wrote %s on the host", path)
		}
	}
}
