package stun

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// needTool returns a tool's path. Under CI, where .ci/run installs every
// tool the tests use, a missing one fails the test; elsewhere it skips.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing: .ci/run must install %s", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

var reflexive = regexp.MustCompile(`UDP reflexive addr: (\S+)`)

// TestThirdPartyClient: coturn's STUN client, which sends a bare 20-byte
// Binding request as many STUN stacks and NAT checkers do, gets its
// address from the server.
func TestThirdPartyClient(t *testing.T) {
	client := needTool(t, "turnutils_stunclient", "coturn")
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			srv, addr := startServer(t, lo.network, lo.host, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			port := addr.(*net.UDPAddr).Port
			out, err := exec.CommandContext(ctx, client, "-p", strconv.Itoa(port), lo.host).CombinedOutput()
			m := reflexive.FindSubmatch(out)
			if err != nil || m == nil {
				t.Fatalf("turnutils_stunclient: %v\n%s", err, out)
			}
			if st := srv.Stats(); st.Replies == 0 || st.Malformed != 0 {
				t.Errorf("stats = %+v", st)
			}
			t.Logf("coturn's client learned %s", m[1])
		})
	}
}
