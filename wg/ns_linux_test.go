package wg

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// netlinkProtocols returns the protocols of this process's open netlink
// sockets, from /proc/net/netlink (whose Eth column is the protocol) and
// the socket inodes of /proc/self/fd.
func netlinkProtocols(t *testing.T) map[int]int {
	t.Helper()
	mine := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if dest, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(dest, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(dest, "socket:["), "]")] = true
		}
	}
	f, err := os.Open("/proc/self/net/netlink")
	if err != nil {
		t.Skipf("no /proc/self/net/netlink: %v", err)
	}
	defer f.Close()
	protos := map[int]int{}
	lines := bufio.NewScanner(f)
	lines.Scan() // the header
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 10 || !mine[fields[9]] {
			continue
		}
		proto, _ := strconv.Atoi(fields[1])
		protos[proto]++
	}
	return protos
}

// The engine's netlink handle speaks NETLINK_ROUTE (0) only: XFRM or
// netfilter sockets fail where their modules cannot be loaded.
func TestNetlinkRouteOnly(t *testing.T) {
	before := netlinkProtocols(t)
	h, err := namespace{}.netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	after := netlinkProtocols(t)
	for proto, n := range after {
		if n > before[proto] && proto != 0 {
			t.Errorf("the handle opened %d netlink socket(s) of protocol %d; want NETLINK_ROUTE (0) only", n-before[proto], proto)
		}
	}
	if after[0] <= before[0] {
		t.Errorf("the handle opened no NETLINK_ROUTE socket (before %v, after %v)", before, after)
	}
}
