package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/service"
	"github.com/wire-mesh/wire/service/servicetest"
)

// wireEnv runs the binary in dir with env as its only WIRE_ variables and
// returns its stdout.
func wireEnv(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(wireBin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WIRE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("wire %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// execStart is the ExecStart= value of a unit.
func execStart(t *testing.T, unit string) string {
	t.Helper()
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			return v
		}
	}
	t.Fatalf("no ExecStart in:\n%s", unit)
	return ""
}

func TestInstallServicePrint(t *testing.T) {
	bin, err := filepath.EvalSymlinks(wireBin) // as os.Executable sees it
	if err != nil {
		t.Fatal(err)
	}
	cwd := t.TempDir()
	// Only the flags set, by hand or through the environment, go into the
	// unit, and the relative state dir becomes absolute.
	unit, err := wireEnv(t, cwd, []string{"WIRE_VPN_SUBNET=10.42"},
		"server", "install-service", "--print", "--format", "systemd",
		"--state-dir", "state", "--debug", "--trusted-proxy", "10.0.0.1", "--listen", ":9443")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(cwd, "state")
	want := bin + " server --state-dir " + state + " --listen :9443 --subnet 10.42 --trusted-proxy 10.0.0.1 --debug"
	if got := execStart(t, unit); got != want {
		t.Errorf("ExecStart=%s\n      want %s", got, want)
	}
	for _, line := range []string{"Type=notify\n", "Restart=always\n", "RestartSec=5\n", "ReadWritePaths=" + state + "\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(unit, line) {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("--print created the state dir %s", state)
	}
	servicetest.Verify(t, "wire-server.service", unit)

	// The plist, with the default state dir and $WIRE_PORT.
	plist, err := wireEnv(t, cwd, []string{"WIRE_PORT=9000"}, "server", "install-service", "--print", "--format", "launchd")
	if err != nil {
		t.Fatal(err)
	}
	got := servicetest.Plist(t, plist).(map[string]any)
	wantArgs := []any{bin, "server", "--state-dir", "/var/lib/wire", "--listen", ":9000"}
	if diff := cmp.Diff(wantArgs, got["ProgramArguments"]); diff != "" {
		t.Errorf("ProgramArguments (-want +got):\n%s", diff)
	}
	if got["Label"] != "com.wire-mesh.wire-server" || got["KeepAlive"] != true || got["StandardErrorPath"] != "/var/log/wire-server.log" {
		t.Errorf("plist: %v", got)
	}

	// Without --format, this system's form.
	native, err := wireEnv(t, cwd, nil, "server", "install-service", "--print")
	if service.Manager == "" {
		if err == nil || !strings.Contains(err.Error(), "--format") {
			t.Errorf("--print where wire knows no service manager: %v", err)
		}
		return
	}
	form, _ := wireEnv(t, cwd, nil, "server", "install-service", "--print", "--format", service.Manager)
	if err != nil || native != form {
		t.Errorf("--print (%v) differs from --print --format %s:\n%s", err, service.Manager, native)
	}
}

// install-service checks the flags as wire server would, then says what
// is missing, before it writes anything.
func TestInstallServiceRefuses(t *testing.T) {
	if service.Available() {
		cannotRun(t, "a service manager runs here: install-service would install")
	}
	state := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no service manager to install into here"},
		{[]string{"--print", "--subnet", "10.99.0.1/16"}, "host bits"},
		{[]string{"--subnet", "10.99.0.1/16"}, "host bits"},
		{[]string{"--trusted-proxy", "nope"}, "--trusted-proxy"},
		{[]string{"--listen", "8787"}, `--listen "8787"`},
		{[]string{"--import", filepath.Join(state, "state.json")}, "--import"},
		{[]string{"--format", "launchd"}, "--format goes with --print"},
		{[]string{"--print", "--format", "upstart"}, `--format "upstart": want systemd or launchd`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--print", "--store", "postgres://wire:secret@db/wire"}, "holds a password"},
		{[]string{"--print", "--store", "postgres://wire@db/wire?password=secret"}, "holds a password"},
	}
	for _, tt := range tests {
		args := append([]string{"server", "install-service", "--state-dir", state}, tt.args...)
		if _, err := wireEnv(t, t.TempDir(), nil, args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("wire %v: %v, want it to say %q", tt.args, err, tt.want)
		}
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("a refused install-service created %s", state)
	}
}

// TestInstallServiceInstalls runs install-service as root where systemd
// seems to run: in a mount namespace of its own, /run/systemd/system
// exists, /etc/systemd/system is a directory of the test's, and systemctl
// is a fake that logs what it is asked.
func TestInstallServiceInstalls(t *testing.T) {
	if os.Geteuid() != 0 {
		cannotRun(t, "needs root for a mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		cannotRun(t, "needs unshare (util-linux)")
	}
	if _, err := os.Stat("/etc/systemd/system"); err != nil {
		cannotRun(t, "no /etc/systemd/system to mount over (Debian package systemd)")
	}
	root := t.TempDir()
	run, units, bin := filepath.Join(root, "run"), filepath.Join(root, "units"), filepath.Join(root, "bin")
	state := filepath.Join(root, "lib", "wire")
	for _, d := range []string{filepath.Join(run, "systemd", "system"), units, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(root, "systemctl.log")
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> '"+log+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /run && mount --bind "$2" /etc/systemd/system && shift 2 && exec "$@"`, "sh", run, units,
		wireBin, "server", "install-service", "--state-dir", state, "--listen", ":9443")
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install-service: %v\n%s", err, out)
	}
	for _, want := range []string{
		"installed /etc/systemd/system/wire-server.service and started it",
		"journalctl -u wire-server -f",
		"wire server key create --state-dir " + state,
		"https://THIS_HOST:9443",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("install-service output lacks %q:\n%s", want, out)
		}
	}
	unit, err := os.ReadFile(filepath.Join(units, "wire-server.service"))
	if err != nil {
		t.Fatal(err)
	}
	if got := execStart(t, string(unit)); !strings.HasSuffix(got, " server --state-dir "+state+" --listen :9443") {
		t.Errorf("ExecStart=%s", got)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, %v; want it made 0700", fi, err)
	}
	asked, _ := os.ReadFile(log)
	if want := "daemon-reload\nenable wire-server.service\nrestart wire-server.service\n"; string(asked) != want {
		t.Errorf("systemctl was asked:\n%s\nwant:\n%s", asked, want)
	}
}

// Under a Type=notify unit, wire server says READY=1 once it listens.
func TestServerNotifiesReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv := startServerEnv(t, []string{"NOTIFY_SOCKET=" + sock}, t.TempDir())
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify socket got %q, %v; want READY=1", buf[:n], err)
	}
	u, err := url.Parse(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		t.Fatalf("ready, but the HTTP API does not answer: %v", err)
	}
	c.Close()
}

// TestServerWithServiceCapabilities runs wire server as the unit does: as
// root with no capability outside its CapabilityBoundingSet, and no new
// privileges. It must start on a fresh state dir and bind a port under
// 1024, which it cannot without the unit's capabilities.
func TestServerWithServiceCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil || os.Geteuid() != 0 {
		cannotRun(t, "needs root and setpriv (util-linux) to drop capabilities")
	}
	unit, err := wireEnv(t, t.TempDir(), nil, "server", "install-service", "--print", "--format", "systemd")
	if err != nil {
		t.Fatal(err)
	}
	var bset []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				bset = append(bset, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(bset) == 0 {
		t.Fatalf("no CapabilityBoundingSet in:\n%s", unit)
	}
	port := freeLowPort(t)
	run := func(caps string) *exec.Cmd {
		return exec.Command("setpriv", "--bounding-set", caps, "--no-new-privs", "--",
			wireBin, "server", "--state-dir", t.TempDir(), "--listen", "127.0.0.1:"+port,
			"--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0")
	}
	srv := startServerCmd(t, run("-all,"+strings.Join(bset, ",")))
	if !strings.HasSuffix(srv.url, ":"+port) {
		t.Errorf("server at %s, want port %s", srv.url, port)
	}
	srv.kill()
	// The check has teeth: without CAP_NET_BIND_SERVICE the port is refused.
	if out, err := run("-all,+net_admin").CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("without CAP_NET_BIND_SERVICE: %v\n%s", err, out)
	}
}

// freeLowPort is a TCP port under 1024 that nothing listens on, on loopback.
func freeLowPort(t *testing.T) string {
	for p := 900; p < 1024; p++ {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return fmt.Sprint(p)
		}
	}
	cannotRun(t, "no free TCP port from 900 to 1023 on loopback")
	return ""
}

// A binary a package manager links into a versioned directory (Homebrew:
// bin/wire -> ../Cellar/wire/1.2.0/bin/wire) goes into the unit by its
// link, which survives upgrades, however it was invoked.
func TestServiceExecutableThroughLink(t *testing.T) {
	root := t.TempDir()
	cellar, bin := filepath.Join(root, "Cellar", "wire", "1.2.0", "bin"), filepath.Join(root, "bin")
	for _, d := range []string{cellar, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(wireBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cellar, "wire"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wire", "wire-server"} {
		if err := os.Symlink(filepath.Join("..", "Cellar", "wire", "1.2.0", "bin", "wire"), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, invoked := range [][]string{
		{filepath.Join(bin, "wire"), "server", "install-service"},
		{filepath.Join(bin, "wire-server"), "install-service"},
	} {
		args := append(invoked[1:], "--print", "--format", "systemd", "--state-dir", "/var/lib/wire")
		out, err := exec.Command(invoked[0], args...).Output()
		if err != nil {
			t.Fatalf("%s: %v", invoked, err)
		}
		want := filepath.Join(bin, "wire") + " server --state-dir /var/lib/wire"
		if got := execStart(t, string(out)); got != want {
			t.Errorf("invoked as %s: ExecStart=%s, want %s", invoked[0], got, want)
		}
	}
}

// cannotRun skips a test this machine cannot run, except under CI, whose
// machine (root, with .ci/run's packages) must run every one.
func cannotRun(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: it must run)", why)
	}
	t.Skip(why)
}
