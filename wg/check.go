package wg

import (
	"errors"
	"fmt"
	"net"
)

// Check says whether an engine of this kind could be made here, with
// interface name and listen port, without making one: the kind is known,
// the system has what it needs (a TUN device, the kernel's wireguard), and
// the port is free. It is for saying what is wrong before anything that
// cannot be taken back (enrolling with a single-use key) is done. An
// interface that already has the name is taken to hold the port: an
// engine replaces it.
func Check(kind, name string, port int) error {
	if kind == "" {
		kind = KindAuto
	}
	if kind != KindAuto && kind != KindKernel && kind != KindUserspace {
		return fmt.Errorf("wg: unknown engine kind %q: want %q, %q or %q", kind, KindAuto, KindKernel, KindUserspace)
	}
	if err := checkPort(name, port); err != nil {
		return err
	}
	var kerr, uerr error
	if kind != KindUserspace {
		kerr = checkKernel()
	}
	if kind != KindKernel {
		uerr = checkUserspace()
	}
	if uerr == nil && (kind == KindUserspace || kerr != nil) {
		uerr = checkUAPI(name) // the userspace engine it would be
	}
	switch {
	case kind == KindKernel:
		return kerr
	case kind == KindUserspace:
		return uerr
	case kerr != nil && uerr != nil:
		return fmt.Errorf("wg: no WireGuard engine: %w; and %w", kerr, uerr)
	}
	return nil
}

// ErrPortInUse says the listen port is taken.
var ErrPortInUse = errors.New("the WireGuard port is in use")

func checkPort(name string, port int) error {
	if port == 0 {
		return nil
	}
	if _, err := net.InterfaceByName(name); err == nil {
		return nil
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		return fmt.Errorf("wg: %w: UDP port %d (%v): pass --port with a free one, or stop what holds it (ss -ulpn 'sport = :%d')", ErrPortInUse, port, err, port)
	}
	return c.Close()
}
