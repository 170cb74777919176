//go:build !linux && !darwin

package wg

import (
	"errors"

	"golang.zx2c4.com/wireguard/tun"
)

const defaultName = "wire0"

// createTUN fails: wire's userspace engine runs on Linux and macOS.
func createTUN(string, int, namespace) (tun.Device, netif, error) {
	return nil, nil, errors.New("wg: this system has no WireGuard engine for wire, which runs on Linux and macOS")
}
