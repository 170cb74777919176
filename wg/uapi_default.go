//go:build !linux && !darwin

package wg

import (
	"errors"
	"net"
)

// openUAPI fails: wire runs the userspace engine on Linux and macOS.
func openUAPI(string) (net.Listener, error) {
	return nil, errors.New("wg: no UAPI socket on this system")
}

func (e *userspace) serveUAPI(net.Listener) { close(e.uapiDone) }

func checkUAPI(string) error { return nil }
