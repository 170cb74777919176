package relay

import (
	"fmt"
	"net"
	"net/netip"
)

// udpConn is the part of *net.UDPConn the relay uses: reads and writes that
// take a netip.AddrPort, and so allocate nothing.
type udpConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
	LocalAddr() net.Addr
}

var _ udpConn = (*net.UDPConn)(nil)

// asUDP returns pc itself if it is a *net.UDPConn (or another udpConn), and
// otherwise an adapter that allocates a net.Addr per datagram.
func asUDP(pc net.PacketConn) udpConn {
	if u, ok := pc.(*net.UDPConn); ok {
		setBuffers(u)
	}
	if u, ok := pc.(udpConn); ok {
		return u
	}
	return packetConn{pc}
}

// socketBuffer is the send and receive buffer a relay socket asks for, as
// wireguard-go does for its own: a relay carries whole tunnels' bursts, and
// the kernel's default (about 200 KiB) drops them.
const socketBuffer = 7 << 20

// packetConn adapts any net.PacketConn whose addresses print as host:port.
type packetConn struct{ net.PacketConn }

func (c packetConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ap, err := netip.ParseAddrPort(from.String())
	if err != nil {
		return n, netip.AddrPort{}, fmt.Errorf("relay: source address %v: %w", from, err)
	}
	return n, ap, nil
}

func (c packetConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteTo(b, net.UDPAddrFromAddrPort(addr))
}

// unmap returns ap with an IPv4-mapped address unmapped, so that addresses
// read from dual-stack sockets compare equal to plain IPv4 ones.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
