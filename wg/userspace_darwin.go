package wg

import (
	"fmt"

	"golang.zx2c4.com/wireguard/tun"
)

// defaultName asks the system for the next free utunN.
const defaultName = "utun"

// createTUN creates a utun device; name must be utun or utunN.
func createTUN(name string, mtu int, _ namespace) (tun.Device, netif, error) {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, nil, fmt.Errorf("wg: cannot create utun device %q: %w (are you root? on macOS the name must be utun or utunN)", name, err)
	}
	actual, err := tdev.Name()
	if err != nil {
		tdev.Close()
		return nil, nil, fmt.Errorf("wg: name of the new utun device: %w", err)
	}
	return tdev, ifconfig{name: actual}, nil
}
