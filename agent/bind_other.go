//go:build !linux

package agent

import "syscall"

// bindToDevice does nothing here: the listener is bound to the VPN address
// alone, and the source check and signatures do the rest.
func bindToDevice(string) func(string, string, syscall.RawConn) error { return nil }
