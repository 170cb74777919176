package node

import (
	"errors"
	"fmt"

	"github.com/wire-mesh/wire/wg"
)

// Preflight checks what wire up needs of this machine before it sends
// anything to the server: the privilege to create an interface, a
// WireGuard engine of the kind asked for, and a free listen port. A join
// that failed after enrolling would have spent a single-use key on a node
// that never ran.
func Preflight(engine, iface string, port int) error {
	if err := canAdminNetwork(); err != nil {
		return err
	}
	if err := wg.Check(engine, iface, port); err != nil {
		return fmt.Errorf("%w (nothing was sent to the server)", err)
	}
	return nil
}

// ErrNeedRoot says wire up was run without the privilege to create a
// network interface.
var ErrNeedRoot = errors.New("wire up needs root to create the network interface: run it with sudo (nothing was sent to the server)")
