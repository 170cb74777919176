package node

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets.
const capNetAdmin = 12

// canAdminNetwork says whether this process may create interfaces: root,
// or CAP_NET_ADMIN in its effective set (a setcap'd binary, a unit's
// AmbientCapabilities).
func canAdminNetwork() error {
	if os.Geteuid() == 0 || hasCap(capNetAdmin) {
		return nil
	}
	return ErrNeedRoot
}

func hasCap(bit uint) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return false
}
