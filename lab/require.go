//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// tools are the commands the lab runs, with the Debian package of each.
var tools = []struct{ cmd, pkg string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"ping", "iputils-ping"},
	{"wg", "wireguard-tools"},
}

// Check says why the lab cannot run here, or returns nil: it needs root and
// the commands ip, nft and ping.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces and nftables need it)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("the %s command (Debian package %s)", tool.cmd, tool.pkg))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return errors.New("the network lab needs " + strings.Join(missing, ", "))
}

// Require skips the test when the lab cannot run here, saying why; when
// the environment has CI=true, it fails the test instead, so that CI never
// passes by skipping the lab.
func Require(t testing.TB) {
	t.Helper()
	err := Check()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: the lab must run in CI, not skip)", err)
	}
	t.Skipf("%v: skipping", err)
}
