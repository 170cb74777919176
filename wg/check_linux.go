package wg

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// checkKernel creates a wireguard link and deletes it: the one sure way to
// know, since the module may be built in, loaded, or loaded on demand.
func checkKernel() error {
	probe, err := openLink("wirechk"+strconv.Itoa(os.Getpid()%100000), namespace{})
	if err != nil {
		return err
	}
	if err := newWireGuard(probe.c, probe.name, 0); err != nil {
		probe.c.Close()
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("kernel WireGuard is not available (%v): load the wireguard module, or use --engine userspace", err)
		}
		return fmt.Errorf("kernel WireGuard: creating a wireguard link: %w", err)
	}
	return probe.remove()
}

// checkUserspace opens the TUN device the embedded wireguard-go needs.
func checkUserspace() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("no TUN device (/dev/net/tun) for the userspace engine: load the tun module (modprobe tun), or in a container pass the device (--device /dev/net/tun)")
	case err != nil:
		return fmt.Errorf("cannot open /dev/net/tun for the userspace engine: %w", err)
	}
	return f.Close()
}
