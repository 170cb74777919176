package agent

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindToDevice ties the listener to the WireGuard interface, so that only
// packets that came through a tunnel reach it, whatever the host's routes.
func bindToDevice(iface string) func(string, string, syscall.RawConn) error {
	if iface == "" {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), iface) })
		return err
	}
}
