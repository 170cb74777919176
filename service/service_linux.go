package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Manager is the service manager this package drives here.
const Manager = "systemd"

// Where systemd keeps its units, and what exists while systemd runs the
// machine (sd_booted(3)); variables for tests.
var (
	unitDir    = "/etc/systemd/system"
	systemdRun = "/run/systemd/system"
)

// Available says whether systemd manages this machine.
func Available() bool {
	_, err := os.Stat(systemdRun)
	return err == nil
}

// Path is the file the service manager reads the spec from.
func (s Spec) Path() string { return filepath.Join(unitDir, s.Unit()) }

// Logs is the command that follows the service's output.
func Logs(s Spec) string { return "journalctl -u " + s.Name + " -f" }

// Install writes the unit, enables it and (re)starts it. A sandboxed
// spec's state dir must exist.
func Install(ctx context.Context, s Spec) error {
	if !Available() {
		return fmt.Errorf("%w (systemd is not running)", ErrUnavailable)
	}
	if s.Sandbox {
		if err := checkSandbox(s); err != nil {
			return err
		}
	}
	if err := writeFile(s.Path(), []byte(Systemd(s))); err != nil {
		return err
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", s.Unit()}, {"restart", s.Unit()}} {
		if err := run(ctx, "systemctl", args...); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the service named name (a Spec's Name) if it is active; it
// reports whether it was.
func Stop(ctx context.Context, name string) bool {
	unit := Spec{Name: name}.Unit()
	if !Available() || run(ctx, "systemctl", "is-active", "--quiet", unit) != nil {
		return false
	}
	return run(ctx, "systemctl", "stop", unit) == nil
}

// checkSandbox says why the sandboxed program could not reach its binary
// or use its state dir. It runs as root, but without CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH: another user's directory is as closed to it as to
// anyone, so a failure here would otherwise be a restart loop.
func checkSandbox(s Spec) error {
	fi, err := os.Stat(s.StateDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm()&0o700 != 0o700 {
		return fmt.Errorf("%s belongs to uid %d (mode %v), but the service runs as root without the capability to override permissions: chown -R root: %[1]s, or use another state dir", s.StateDir, st.Uid, fi.Mode().Perm())
	}
	for _, p := range []string{s.StateDir, s.Args[0]} {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if fi, err := os.Stat(dir); err == nil && !rootSearches(fi) {
				return fmt.Errorf("%s is closed to root without the capability to override permissions, as the service runs, so it cannot reach %s: chmod o+x %[1]s, or move %[2]s", dir, p)
			}
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	return nil
}

// rootSearches says whether uid 0 and gid 0 may pass through a directory
// by its permission bits alone.
func rootSearches(fi os.FileInfo) bool {
	st, m := fi.Sys().(*syscall.Stat_t), fi.Mode().Perm()
	switch {
	case st.Uid == 0:
		return m&0o100 != 0
	case st.Gid == 0:
		return m&0o010 != 0
	}
	return m&0o001 != 0
}
