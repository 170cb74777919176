// Package roottest skips the tests that need root when they run without
// it, and fails them under CI, which runs as root, where a skip would hide
// that they never ran.
package roottest

import (
	"os"
	"testing"
)

// Need skips t unless the process is root, saying why root is needed
// ("to open raw sockets"); with CI=true it fails t instead.
func Need(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root %s (CI=true: it must run)", why)
	}
	t.Skipf("needs root %s", why)
}
