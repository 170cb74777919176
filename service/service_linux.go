package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
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
	old, err := os.ReadFile(s.Path())
	hadOld := err == nil
	wasActive := hadOld && run(ctx, "systemctl", "is-active", "--quiet", s.Unit()) == nil
	if err := writeFile(s.Path(), []byte(Systemd(s))); err != nil {
		return err
	}
	err = activate(ctx, s)
	if err == nil {
		return nil
	}
	// A unit that does not start must not replace one that did (or leave
	// a restart loop behind): say why, and put back what was there.
	if why := LastLog(ctx, s); why != "" {
		err = fmt.Errorf("%w\n  %s said: %s", err, s.Name, why)
	}
	return fmt.Errorf("%w\n  %s", err, rollback(ctx, s, old, hadOld, wasActive))
}

func activate(ctx context.Context, s Spec) error {
	for _, args := range [][]string{{"daemon-reload"}, {"enable", s.Unit()}, {"restart", s.Unit()}} {
		if err := run(ctx, "systemctl", args...); err != nil {
			return err
		}
	}
	return nil
}

// rollback restores the unit a failed Install replaced, in the state it
// was in, or removes the unit if there was none; it says what it left.
func rollback(ctx context.Context, s Spec, old []byte, hadOld, wasActive bool) string {
	if !hadOld {
		run(ctx, "systemctl", "disable", "--now", s.Unit()) // it may never have been enabled
		if err := os.Remove(s.Path()); err != nil {
			return "removing the unit failed: " + err.Error()
		}
		run(ctx, "systemctl", "daemon-reload")
		return "nothing is left installed"
	}
	if err := writeFile(s.Path(), old); err != nil {
		return "putting the previous unit back failed: " + err.Error()
	}
	if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return "the previous unit is back, but " + err.Error()
	}
	if !wasActive {
		run(ctx, "systemctl", "stop", s.Unit())
		return "the previous unit is back, stopped as it was"
	}
	if err := run(ctx, "systemctl", "restart", s.Unit()); err != nil {
		return "the previous unit is back, but does not start either: " + err.Error()
	}
	return "the previous unit is back and running"
}

// LastLog is the last line the service's last run logged, from the
// journal. The journal takes the lines of a process that just exited in
// its own time, so a line of that run (by its invocation id) is waited
// for, up to lastLogWait; else the unit's last line, of whichever run.
func LastLog(ctx context.Context, s Spec) string {
	last := func(match ...string) string {
		args := append([]string{"-n", "1", "-o", "cat", "-q", "--no-pager"}, match...)
		out, err := exec.CommandContext(ctx, "journalctl", args...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	out, _ := exec.CommandContext(ctx, "systemctl", "show", "--property", "InvocationID", "--value", s.Unit()).Output()
	if id := strings.TrimSpace(string(out)); id != "" {
		deadline := time.Now().Add(lastLogWait)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if line := last("_SYSTEMD_INVOCATION_ID=" + id); line != "" {
				return line
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return last("-u", s.Unit())
}

// lastLogWait bounds how long LastLog waits for the journal.
const lastLogWait = 3 * time.Second

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
