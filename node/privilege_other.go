//go:build !linux

package node

import "os"

// canAdminNetwork says whether this process may create interfaces: root.
func canAdminNetwork() error {
	if os.Geteuid() == 0 {
		return nil
	}
	return ErrNeedRoot
}
