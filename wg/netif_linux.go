package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// link is a network interface as netlink sees it, through a handle opened
// in the engine's namespace, so it may be used from any thread.
type link struct {
	h    *netlink.Handle
	name string
}

var _ netif = (*link)(nil)

func openLink(name string, ns namespace) (*link, error) {
	h, err := ns.netlink()
	if err != nil {
		return nil, fmt.Errorf("wg: open netlink: %w", err)
	}
	return &link{h: h, name: name}, nil
}

func (l *link) get() (netlink.Link, error) {
	nl, err := l.h.LinkByName(l.name)
	if err != nil {
		return nil, fmt.Errorf("wg: find interface %s: %w", l.name, err)
	}
	return nl, nil
}

// setAddress removes have and adds want, with its prefix length, so that
// the kernel routes want's subnet through the interface.
func (l *link) setAddress(have, want netip.Prefix) error {
	nl, err := l.get()
	if err != nil {
		return err
	}
	if have.IsValid() && have != want {
		err := l.h.AddrDel(nl, addr(have))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("wg: remove address %v from %s: %w", have, l.name, err)
		}
	}
	if want.IsValid() {
		if err := l.h.AddrReplace(nl, addr(want)); err != nil {
			return fmt.Errorf("wg: set address %v on %s: %w", want, l.name, err)
		}
	}
	return nil
}

func addr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
}

func (l *link) up() error {
	nl, err := l.get()
	if err != nil {
		return err
	}
	if err := l.h.LinkSetUp(nl); err != nil {
		return fmt.Errorf("wg: bring %s up: %w", l.name, err)
	}
	return nil
}

// remove deletes the interface if it is still there (a TUN device goes
// away by itself when closed) and closes the handle.
func (l *link) remove() error {
	defer l.h.Close()
	nl, err := l.h.LinkByName(l.name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wg: find interface %s to remove it: %w", l.name, err)
	}
	if err := l.h.LinkDel(nl); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("wg: remove interface %s: %w", l.name, err)
	}
	return nil
}

// errLinkExists says an interface of the name is already there.
var errLinkExists = errors.New("interface already exists")

// addWireGuard creates a kernel WireGuard interface; errNoKernel if the
// kernel has no wireguard link type.
func (l *link) addWireGuard(mtu int) error {
	err := l.h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: l.name, MTU: mtu}})
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("wg: %w (creating a wireguard link says %v): load the wireguard module, or use the userspace engine", errNoKernel, err)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("wg: %w: %s (left by an earlier run? remove it with: ip link del %s)", errLinkExists, l.name, l.name)
	case err != nil:
		return fmt.Errorf("wg: create WireGuard interface %s: %w (are you root?)", l.name, err)
	}
	return nil
}
