package service

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wire-mesh/wire/internal/roottest"
)

// fakeSystemd points the package at a unit directory of the test's own
// and puts a systemctl on PATH that logs its arguments and fails, saying
// "boom", for the command in failOn. It returns the unit directory and
// what systemctl was asked, so far.
func fakeSystemd(t *testing.T, failOn string) (string, func() []string) {
	t.Helper()
	root := t.TempDir()
	units, run, bin := filepath.Join(root, "units"), filepath.Join(root, "run"), filepath.Join(root, "bin")
	for _, d := range []string{units, run, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(root, "systemctl.log")
	script := `#!/bin/sh
echo "$*" >> '` + log + `'
case "$1" in ` + failOn + `) echo "Failed to $1: boom" >&2; exit 1;; esac
`
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	oldUnits, oldRun := unitDir, systemdRun
	unitDir, systemdRun = units, run
	t.Cleanup(func() { unitDir, systemdRun = oldUnits, oldRun })
	return units, func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
	}
}

func TestInstall(t *testing.T) {
	units, asked := fakeSystemd(t, "none")
	s := nodeSpec
	if err := Install(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(units, "wire.service")
	if s.Path() != path {
		t.Errorf("Path() = %s, want %s", s.Path(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Systemd(s), string(b)); diff != "" {
		t.Errorf("installed unit (-want +got):\n%s", diff)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v, want 0644", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(units); len(entries) != 1 {
		t.Errorf("the unit directory holds %d files, want the unit alone", len(entries))
	}
	want := []string{"daemon-reload", "enable_wire.service", "restart_wire.service"}
	if diff := cmp.Diff(want, asked()); diff != "" {
		t.Errorf("systemctl commands (-want +got):\n%s", diff)
	}
}

func TestInstallFails(t *testing.T) {
	_, asked := fakeSystemd(t, "enable")
	err := Install(context.Background(), nodeSpec)
	if err == nil || !strings.Contains(err.Error(), "systemctl enable wire.service") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Install with a failing systemctl enable: %v; want the command and its output", err)
	}
	// There was no unit before: none is left.
	want := []string{"daemon-reload", "enable_wire.service", "show_--property_InvocationID_--value_wire.service", "disable_--now_wire.service", "daemon-reload"}
	if diff := cmp.Diff(want, asked()); diff != "" {
		t.Errorf("systemctl commands (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(nodeSpec.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed install left %s: %v", nodeSpec.Path(), err)
	}
	if !strings.Contains(err.Error(), "nothing is left installed") {
		t.Errorf("the error does not say what was left: %v", err)
	}
}

// A new unit whose program does not start gives way to the one it was to
// replace, which runs again; the error says why, from the journal.
func TestInstallRollsBack(t *testing.T) {
	roottest.Need(t, "for a state dir of root's, as the sandboxed service needs")
	units, asked := fakeSystemd(t, "none")
	path := filepath.Join(units, "wire-server.service")
	// This systemctl fails to start a unit that asks for port 9787, as
	// systemd does when the program exits before READY=1.
	bin := filepath.Dir(must(exec.LookPath("systemctl")))
	script := `#!/bin/sh
echo "$*" >> '` + filepath.Join(filepath.Dir(bin), "systemctl.log") + `'
if [ "$1" = restart ] && grep -q 9787 '` + path + `'; then echo "Job for $2 failed" >&2; exit 1; fi
if [ "$1" = show ]; then echo 0123abcd; fi
`
	os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755)
	// The journal's last line of the unit is still the previous run's; the
	// failed run's is found by its invocation id.
	journal := `#!/bin/sh
case "$*" in
*_SYSTEMD_INVOCATION_ID=0123abcd*) echo 'wire: HTTP listen: bind: address already in use' ;;
*) echo 'wire server: Then on each node: sudo wire up' ;;
esac
`
	os.WriteFile(filepath.Join(bin, "journalctl"), []byte(journal), 0o755)

	good := serverSpec
	good.StateDir = t.TempDir()
	if err := Install(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	first := len(asked())
	bad := good
	bad.Args = append(slices.Clone(good.Args), "--listen", ":9787")
	err := Install(context.Background(), bad)
	for _, want := range []string{"systemctl restart wire-server.service", "address already in use", "the previous unit is back and running"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Install of a unit that fails: %v; want it to say %q", err, want)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != Systemd(good) {
		t.Errorf("after the failed install the unit is:\n%s", b)
	}
	want := []string{
		"is-active_--quiet_wire-server.service",
		"daemon-reload", "enable_wire-server.service", "restart_wire-server.service", // fails
		"show_--property_InvocationID_--value_wire-server.service", // which run failed
		"daemon-reload", "restart_wire-server.service", // the previous unit
	}
	if diff := cmp.Diff(want, asked()[first:]); diff != "" {
		t.Errorf("systemctl commands (-want +got):\n%s", diff)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestInstallWithoutSystemd(t *testing.T) {
	units, asked := fakeSystemd(t, "none")
	systemdRun = filepath.Join(t.TempDir(), "absent")
	if Available() {
		t.Error("Available() without /run/systemd/system")
	}
	if err := Install(context.Background(), nodeSpec); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Install without systemd: %v, want ErrUnavailable", err)
	}
	if entries, _ := os.ReadDir(units); len(entries) != 0 || len(asked()) != 0 {
		t.Errorf("Install without systemd wrote %d files and ran systemctl %q", len(entries), asked())
	}
}

// The sandboxed server runs as root without CAP_DAC_OVERRIDE: a state dir
// of another user's, or behind one, would fail it in a restart loop.
func TestInstallSandbox(t *testing.T) {
	roottest.Need(t, "to give directories to another user")
	units, asked := fakeSystemd(t, "none")
	mine := t.TempDir()
	if err := os.Chown(mine, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	behind := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(behind, "wire"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(behind, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ dir, want string }{
		{mine, "belongs to uid 1000"},
		{filepath.Join(behind, "wire"), behind + " is closed to root"},
	} {
		s := serverSpec
		s.StateDir = tt.dir
		if err := Install(context.Background(), s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Install with state dir %s: %v; want it to say %q", tt.dir, err, tt.want)
		}
	}
	if entries, _ := os.ReadDir(units); len(entries) != 0 || len(asked()) != 0 {
		t.Errorf("refused installs wrote %d files and ran systemctl %q", len(entries), asked())
	}
	s := serverSpec
	s.StateDir = t.TempDir() // root's, 0700
	if err := Install(context.Background(), s); err != nil {
		t.Errorf("Install with state dir %s: %v", s.StateDir, err)
	}
}

func TestStop(t *testing.T) {
	_, asked := fakeSystemd(t, "none")
	if !Stop(context.Background(), "wire") {
		t.Error("Stop of an active unit: false")
	}
	if diff := cmp.Diff([]string{"is-active_--quiet_wire.service", "stop_wire.service"}, asked()); diff != "" {
		t.Errorf("systemctl commands (-want +got):\n%s", diff)
	}
	_, asked = fakeSystemd(t, "is-active")
	if Stop(context.Background(), "wire") {
		t.Error("Stop of an inactive unit: true")
	}
	if diff := cmp.Diff([]string{"is-active_--quiet_wire.service"}, asked()); diff != "" {
		t.Errorf("systemctl commands (-want +got):\n%s", diff)
	}
}
