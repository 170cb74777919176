package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Manager is the service manager this package drives here.
const Manager = "launchd"

// daemonDir holds the system's launchd daemons, started at boot as root.
const daemonDir = "/Library/LaunchDaemons"

// Available says whether launchd manages this machine: it always does.
func Available() bool { return true }

// Path is the file the service manager reads the spec from.
func (s Spec) Path() string { return filepath.Join(daemonDir, s.Label()+".plist") }

// Logs is the command that follows the service's output.
func Logs(s Spec) string { return "tail -f " + s.LogPath }

// Install writes the property list and loads it into launchd's system
// domain, which starts the program (RunAtLoad); a job already loaded is
// unloaded first, so that a changed plist takes effect.
func Install(ctx context.Context, s Spec) error {
	if err := writeFile(s.Path(), []byte(Launchd(s))); err != nil {
		return err
	}
	target := "system/" + s.Label()
	if err := bootout(ctx, target); err != nil {
		return err
	}
	return run(ctx, "launchctl", "bootstrap", "system", s.Path())
}

// Stop unloads the service named name (a Spec's Name) if it is loaded,
// which stops its program with SIGTERM; it reports whether it did. The
// plist stays: launchd loads it again at boot, as systemd starts an
// enabled unit after `systemctl stop`.
func Stop(ctx context.Context, name string) bool {
	target := "system/" + Spec{Name: name}.Label()
	return loaded(ctx, target) && bootout(ctx, target) == nil
}

// bootout unloads a job if it is loaded ("not loaded" is no error), and
// waits until launchd has let go of it: bootstrapping it again before
// then fails with "Bootstrap failed: 5: Input/output error".
func bootout(ctx context.Context, target string) error {
	err := run(ctx, "launchctl", "bootout", target)
	for deadline := time.Now().Add(10 * time.Second); loaded(ctx, target); {
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("launchctl bootout %s: the job is still loaded after 10s", target)
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// loaded says whether launchd knows the job.
func loaded(ctx context.Context, target string) bool {
	return exec.CommandContext(ctx, "launchctl", "print", target).Run() == nil
}

// LastLog is the last line the service logged, from its log file.
func LastLog(_ context.Context, s Spec) string {
	b, _ := os.ReadFile(s.LogPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
