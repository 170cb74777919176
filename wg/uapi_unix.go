//go:build linux || darwin

package wg

import (
	"bufio"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/ipc"
)

// uapiDir is where wireguard-go, and wireguard-tools' wg, keep the UAPI
// sockets of userspace interfaces.
const uapiDir = "/var/run/wireguard"

// openUAPI listens on the standard UAPI socket of the interface name, so
// that wg show, wg show NAME dump and wg showconf read a userspace wire
// interface as they read any WireGuard interface. The path is one for all
// network namespaces: a live socket there belongs to another interface of
// that name, and is refused, never taken over.
func openUAPI(name string) (net.Listener, error) {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("wg: %s/%s.sock, the UAPI socket for %s: %w: another WireGuard interface named %s holds it "+
			"(a wire node or wireguard-go, maybe in another network namespace: the path is shared by all); give this one another --interface",
			uapiDir, name, name, err, name)
	}
	defer f.Close()
	ln, err := ipc.UAPIListen(name, f)
	if err != nil {
		return nil, fmt.Errorf("wg: listen on the UAPI socket for %s: %w", name, err)
	}
	return ln, nil
}

// serveUAPI answers wg's requests on ln until it is closed.
func (e *userspace) serveUAPI(ln net.Listener) {
	defer close(e.uapiDone)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go e.handleUAPI(c)
	}
}

// handleUAPI answers one client of the UAPI socket as wireguard-go's own
// handler does, but read-only: wg show and wg showconf work, and wg set is
// refused (EPERM). wire owns the interface's configuration; it would not
// see such a change, and would undo it only at its next change to that
// peer, so it takes none at all.
func (e *userspace) handleUAPI(c net.Conn) {
	defer c.Close()
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	for {
		op, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		var code int64
		switch op {
		case "get=1\n":
			if b, err := rw.ReadByte(); err != nil || b != '\n' {
				return
			}
			if err := e.dev.IpcGetOperation(rw.Writer); err != nil {
				code = ipc.IpcErrorIO
			}
		case "set=1\n":
			for line := ""; line != "\n"; {
				if line, err = rw.ReadString('\n'); err != nil {
					return
				}
			}
			code = -int64(unix.EPERM)
		default:
			return
		}
		fmt.Fprintf(rw, "errno=%d\n\n", code)
		if rw.Flush() != nil {
			return
		}
	}
}

// checkUAPI says whether the UAPI socket of the interface name is held by
// a live interface, as openUAPI would find it.
func checkUAPI(name string) error {
	path := uapiDir + "/" + name + ".sock"
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil // no socket, or a stale one that openUAPI replaces
	}
	c.Close()
	return fmt.Errorf("%s, the UAPI socket for %s, is held by another WireGuard interface named %s "+
		"(a wire node or wireguard-go, maybe in another network namespace: the path is shared by all); give this one another --interface", path, name, name)
}
