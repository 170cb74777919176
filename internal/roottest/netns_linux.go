package roottest

import (
	"os"
	"regexp"
	"testing"

	"github.com/vishvananda/netns"
)

// RemoveDeadNamespaces deletes the named network namespaces matching
// names, whose first group is the pid of the test process that made them,
// that runs which have died left behind; those of live processes are
// theirs.
func RemoveDeadNamespaces(t testing.TB, names *regexp.Regexp) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m := names.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			t.Logf("remove leftover namespace %s: %v", e.Name(), err)
		}
	}
}
