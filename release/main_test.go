package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestMain fills the module cache before any test builds a release with
// the module proxy turned off (see offline): a fresh machine has only the
// modules of its own platform's build, and the release cross-builds for
// macOS too, whose dependencies (go-isatty's, for one) it never fetched.
func TestMain(m *testing.M) {
	cmd := exec.Command("go", "mod", "download")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go mod download (for the release builds): %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
