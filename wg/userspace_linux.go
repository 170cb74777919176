package wg

import (
	"fmt"

	"golang.zx2c4.com/wireguard/tun"
)

const defaultName = "wire0"

// createTUN creates the TUN device name in the current namespace.
func createTUN(name string, mtu int, ns namespace) (tun.Device, netif, error) {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, nil, fmt.Errorf("wg: cannot create TUN device %s: %w (are you root? is /dev/net/tun present?)", name, err)
	}
	l, err := openLink(name, ns)
	if err != nil {
		tdev.Close()
		return nil, nil, err
	}
	return nsTUN{Device: tdev, ns: ns}, l, nil
}

// nsTUN is a TUN device whose MTU is read inside its namespace:
// wireguard-go reads it by name, from the goroutine that handles the
// device's events, which may run in any namespace.
type nsTUN struct {
	tun.Device
	ns namespace
}

func (t nsTUN) MTU() (int, error) {
	var mtu int
	err := t.ns.run(func() (err error) {
		mtu, err = t.Device.MTU()
		return err
	})
	return mtu, err
}
