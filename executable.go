package main

import (
	"os"
	"os/exec"
	"path/filepath"
)

// serviceExecutable is the path a service should run this program by. On
// Linux os.Executable resolves symlinks, so for a binary that a package
// manager links into a versioned directory (Homebrew's bin/wire, into
// Cellar/wire/VERSION) it names a file the next upgrade deletes. The
// directory this program was invoked from, when it holds the same file
// under the name wire, stays valid.
func serviceExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	invoked, err := exec.LookPath(os.Args[0])
	if err != nil {
		return exe, nil
	}
	// Invoked as wire-server, the service still runs wire: its arguments
	// name the subcommand.
	stable, err := filepath.Abs(filepath.Join(filepath.Dir(invoked), filepath.Base(exe)))
	if err != nil {
		return exe, nil
	}
	a, errA := os.Stat(stable)
	b, errB := os.Stat(exe)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		return exe, nil
	}
	return stable, nil
}
