package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// link is a network interface as rtnetlink sees it, through a connection
// opened in the engine's namespace, so it may be used from any thread.
type link struct {
	c    *rtnetlink.Conn
	name string
}

var _ netif = (*link)(nil)

func openLink(name string, ns namespace) (*link, error) {
	c, err := ns.netlink()
	if err != nil {
		return nil, fmt.Errorf("wg: open netlink: %w", err)
	}
	return &link{c: c, name: name}, nil
}

// index looks the interface up by name; ENODEV if there is none.
func (l *link) index() (uint32, error) {
	msgs, err := l.c.Execute(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: l.name}}, unix.RTM_GETLINK, netlink.Request)
	if err != nil {
		return 0, fmt.Errorf("wg: find interface %s: %w", l.name, err)
	}
	for _, m := range msgs {
		if lm, ok := m.(*rtnetlink.LinkMessage); ok {
			return lm.Index, nil
		}
	}
	return 0, fmt.Errorf("wg: find interface %s: %w", l.name, unix.ENODEV)
}

// setAddress removes have and adds want, with its prefix length, so that
// the kernel routes want's subnet through the interface.
func (l *link) setAddress(have, want netip.Prefix) error {
	index, err := l.index()
	if err != nil {
		return err
	}
	if have.IsValid() && have != want {
		err := l.c.Address.Delete(addr(index, have))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("wg: remove address %v from %s: %w", have, l.name, err)
		}
	}
	if want.IsValid() {
		_, err := l.c.Execute(addr(index, want), unix.RTM_NEWADDR, netlink.Request|netlink.Create|netlink.Replace|netlink.Acknowledge)
		if err != nil {
			return fmt.Errorf("wg: set address %v on %s: %w", want, l.name, err)
		}
	}
	return nil
}

// addr is the message for the address p on the interface index, as ip
// addr writes it: local and peer address the same.
func addr(index uint32, p netip.Prefix) *rtnetlink.AddressMessage {
	family := unix.AF_INET6
	if p.Addr().Is4() {
		family = unix.AF_INET
	}
	ip := net.IP(p.Addr().AsSlice())
	return &rtnetlink.AddressMessage{
		Family:       uint8(family),
		PrefixLength: uint8(p.Bits()),
		Index:        index,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	}
}

func (l *link) up() error {
	index, err := l.index()
	if err != nil {
		return err
	}
	if err := l.c.Link.Set(&rtnetlink.LinkMessage{Index: index, Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		return fmt.Errorf("wg: bring %s up: %w", l.name, err)
	}
	return nil
}

// remove deletes the interface if it is still there (a TUN device goes
// away by itself when closed) and closes the connection.
func (l *link) remove() error {
	defer l.c.Close()
	index, err := l.index()
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wg: find interface %s to remove it: %w", l.name, err)
	}
	if err := l.c.Link.Delete(index); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("wg: remove interface %s: %w", l.name, err)
	}
	return nil
}

// errLinkExists says an interface of the name is already there.
var errLinkExists = errors.New("interface already exists")

// addWireGuard creates a kernel WireGuard interface; errNoKernel if the
// kernel has no wireguard link type.
func (l *link) addWireGuard(mtu int) error {
	err := newWireGuard(l.c, l.name, mtu)
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

// newWireGuard creates a wireguard link (mtu 0: the kernel's default).
func newWireGuard(c *rtnetlink.Conn, name string, mtu int) error {
	return c.Link.New(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
		Name: name,
		MTU:  uint32(mtu),
		Info: &rtnetlink.LinkInfo{Kind: "wireguard"},
	}})
}
