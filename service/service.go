// Package service runs wire under the system's service manager: it writes
// systemd units and launchd daemons from one Spec, installs and starts
// them, and tells systemd when a program is ready (sd_notify).
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/wire-mesh/wire/internal/atomicfile"
)

// Spec describes one service. Systemd and Launchd render it; Install
// puts it where this system's service manager reads it.
type Spec struct {
	// Name is the base name: "wire" is the systemd unit wire.service and
	// the launchd label com.wire-mesh.wire.
	Name        string
	Description string
	// Args is the program and its arguments. Args[0] is an absolute path,
	// without quotes, backslashes or control characters (systemd refuses
	// them there, however escaped).
	Args []string
	// StateDir is the one directory the program writes; the sandbox
	// keeps it writable.
	StateDir     string
	Restart      Restart
	RestartDelay time.Duration // systemd's RestartSec, launchd's ThrottleInterval
	// Notify says the program sends READY=1 (see Notify) once it serves,
	// so that systemd's start waits for it, and fails if it never comes.
	Notify bool
	// Sandbox confines the program under systemd to the state dir and
	// to the network, as root without any capability but binding low
	// ports and forcing socket buffers. For the server, not the node.
	Sandbox bool
	// MaxFiles raises systemd's limit on open files (LimitNOFILE); launchd
	// leaves the hard limit unlimited and Go raises its own soft limit.
	MaxFiles int
	// LogPath is where launchd sends the program's output; under systemd
	// it goes to the journal.
	LogPath string
}

// Restart says when the service manager starts the program again.
type Restart string

const (
	// OnFailure restarts after a crash or a non-zero exit, not after a
	// clean exit: the node's `wire down` makes it exit 0.
	OnFailure Restart = "on-failure"
	// Always restarts whenever the program ends, unless the service
	// manager stopped it.
	Always Restart = "always"
)

// Unit is the name of the systemd unit.
func (s Spec) Unit() string { return s.Name + ".service" }

// Label is the launchd label.
func (s Spec) Label() string { return "com.wire-mesh." + s.Name }

// Runs says whether the unit or property list at path runs its program
// with args among its arguments, one after the other, as Systemd or
// Launchd writes them: wire down uses it to stop only the service that
// runs its own node's state dir.
func Runs(path string, args ...string) bool {
	b, err := os.ReadFile(path)
	if err != nil || len(args) == 0 {
		return false
	}
	words := make([]string, len(args))
	strs := make([]string, len(args))
	for i, a := range args {
		words[i] = regexp.QuoteMeta(strings.ReplaceAll(systemdWord(a), "$", "$$"))
		strs[i] = regexp.QuoteMeta("<string>" + xmlText(a) + "</string>")
	}
	unit := regexp.MustCompile(`(?m)^ExecStart=(.*\s)?` + strings.Join(words, `\s+`) + `(\s|$)`)
	plist := regexp.MustCompile(strings.Join(strs, `\s*`))
	return unit.Match(b) || plist.Match(b)
}

// ErrUnavailable is Install's error where no service manager it knows runs.
var ErrUnavailable = errors.New("no service manager here: wire installs systemd units on Linux and launchd daemons on macOS")

// run runs a service manager's command. Its error names the command and
// carries the command's output, which says what went wrong.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	cmd := strings.Join(append([]string{name}, args...), " ")
	if out = bytes.TrimSpace(out); len(out) > 0 {
		return fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	return fmt.Errorf("%s: %v", cmd, err)
}

// writeFile replaces path with b, mode 0644, whole: the service manager
// never reads half a file.
func writeFile(path string, b []byte) error {
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
