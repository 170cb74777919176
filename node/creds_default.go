//go:build !linux && !darwin

package node

import (
	"errors"
	"net"
)

// peerUID is not known on this platform: changes are refused.
func peerUID(*net.UnixConn) (uint32, error) {
	return 0, errors.New("peer credentials are not supported on this platform")
}
