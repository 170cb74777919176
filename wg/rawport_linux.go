package wg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// rawPort carries the kernel engine's sideband once WireGuard holds its
// port, when no socket can bind the port any more. It sends from the port
// through raw IP sockets, which write their own UDP header, and receives
// through them too: a raw UDP socket gets a copy of each UDP datagram this
// machine takes in (after netfilter, so exactly what WireGuard's socket
// gets), and a socket filter keeps those to the port that are STUN or
// probes. WireGuard drops its own copy of those: neither is a WireGuard
// message. The filter keeps the handshake messages too, which WireGuard
// takes in as well: the engine looks at them for crossings (witness).
// Raw sockets need CAP_NET_RAW, which a root daemon has.
//
// The price is a little kernel work per UDP datagram received: Linux
// clones each for a raw socket before the filter drops it.
type rawPort struct {
	*sideband
	port uint16
	// handshake, if set, sees each handshake message to the port, which
	// it must not keep.
	handshake func(b []byte, from netip.AddrPort)
	v4        *net.IPConn
	v6        *net.IPConn // nil where the machine has no IPv6
	log       *slog.Logger
	reads     sync.WaitGroup
}

// udpHeaderLen is the UDP header's size, which the raw socket writes and
// reads along with each datagram.
const udpHeaderLen = 8

// openRawPort opens the raw sockets of port in ns; handshake (if not nil)
// is rawPort.handshake.
func openRawPort(ns namespace, port uint16, log *slog.Logger, handshake func([]byte, netip.AddrPort)) (*rawPort, error) {
	r := &rawPort{port: port, log: log, handshake: handshake}
	r.sideband = newSideband(r.sendTo)
	err := ns.run(func() (err error) {
		if r.v4, err = listenRaw("ip4:udp", "0.0.0.0", port); err != nil {
			return fmt.Errorf("wg: open a raw UDP socket for STUN and probes on port %d: %w (this needs CAP_NET_RAW)", port, err)
		}
		if r.v6, err = listenRaw("ip6:udp", "::", port); err != nil {
			log.Debug("no IPv6 sideband on the WireGuard port", "err", err)
			r.v6 = nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range r.conns() {
		r.reads.Add(1)
		go r.read(c)
	}
	return r, nil
}

// listenRaw opens a raw UDP socket that receives only the sideband's
// datagrams to port and, for IPv6, has the kernel fill in the UDP checksum
// of what it sends (IPv4's may be zero, for none).
func listenRaw(network, addr string, port uint16) (*net.IPConn, error) {
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	c := pc.(*net.IPConn)
	v4 := network == "ip4:udp"
	filter, err := bpf.Assemble(sidebandFilter(port, v4))
	if err == nil && v4 {
		err = ipv4.NewPacketConn(c).SetBPF(filter)
	} else if err == nil {
		p := ipv6.NewPacketConn(c)
		if err = p.SetBPF(filter); err == nil {
			err = p.SetChecksum(true, 6)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sidebandFilter keeps the UDP datagrams to port whose payload starts as
// STUN (the magic cookie at bytes 4-7) or a probe ('w' 'p') does, and
// WireGuard's handshake initiations and responses (type 1 or 2, then three
// zero bytes, at their lengths). An IPv4 raw socket's packets start with
// the IP header, of variable length; an IPv6 one's with the UDP header.
func sidebandFilter(port uint16, ipv4Header bool) []bpf.Instruction {
	start := bpf.Instruction(bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	if ipv4Header {
		start = bpf.LoadMemShift{Off: 0} // X = 4 * the IHL field
	}
	const (
		initiation = msgInitiation << 24 // the first word, read big-endian
		response   = msgResponse << 24
	)
	return []bpf.Instruction{
		/* 0 */ start,
		/* 1 */ bpf.LoadIndirect{Off: 2, Size: 2}, // the destination port
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: 11},
		/* 3 */ bpf.LoadIndirect{Off: udpHeaderLen + 4, Size: 4},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: stunMagicCookie, SkipTrue: 10},
		/* 5 */ bpf.LoadIndirect{Off: udpHeaderLen, Size: 2},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 'w'<<8 | 'p', SkipTrue: 8},
		/* 7 */ bpf.LoadIndirect{Off: udpHeaderLen, Size: 4}, // the first word
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: initiation, SkipTrue: 1},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: response, SkipTrue: 2, SkipFalse: 4},
		/* 10 */ bpf.LoadIndirect{Off: 4, Size: 2}, // the UDP length
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: udpHeaderLen + initiationLength, SkipTrue: 3, SkipFalse: 2},
		/* 12 */ bpf.LoadIndirect{Off: 4, Size: 2},
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: udpHeaderLen + responseLength, SkipTrue: 1},
		/* 14 */ bpf.RetConstant{Val: 0},
		/* 15 */ bpf.RetConstant{Val: 1<<16 - 1},
	}
}

// stunMagicCookie is STUN's fixed header field (RFC 8489 section 5).
const stunMagicCookie = 0x2112A442

func (r *rawPort) conns() []*net.IPConn {
	if r.v6 == nil {
		return []*net.IPConn{r.v4}
	}
	return []*net.IPConn{r.v4, r.v6}
}

// read hands the sideband what c receives, until c is closed. The filter
// is checked again: datagrams can arrive before it is attached.
func (r *rawPort) read(c *net.IPConn) {
	defer r.reads.Done()
	buf := make([]byte, 1<<16)
	for {
		n, addr, err := c.ReadFromIP(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("reading the WireGuard port's sideband stopped", "err", err)
			}
			return
		}
		from, payload, ok := r.parse(buf[:n], addr)
		switch {
		case !ok:
		case isSideband(payload):
			r.handle(payload, from)
		case r.handshake != nil && isHandshake(payload):
			r.handshake(payload, from)
		}
	}
}

// parse takes apart a UDP datagram to the port that arrived from addr.
func (r *rawPort) parse(b []byte, addr *net.IPAddr) (netip.AddrPort, []byte, bool) {
	if len(b) < udpHeaderLen || binary.BigEndian.Uint16(b[2:]) != r.port {
		return netip.AddrPort{}, nil, false
	}
	length := int(binary.BigEndian.Uint16(b[4:]))
	ip, ok := netip.AddrFromSlice(addr.IP)
	if length < udpHeaderLen || length > len(b) || !ok {
		return netip.AddrPort{}, nil, false
	}
	return netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(b)), b[udpHeaderLen:length], true
}

// sendTo sends p to to from the port.
func (r *rawPort) sendTo(p []byte, to netip.AddrPort) error {
	to = unmap(to)
	c := r.v4
	if !to.Addr().Is4() {
		c = r.v6
	}
	if c == nil {
		return fmt.Errorf("wg: no IPv6 on this machine to send to %v", to)
	}
	d := make([]byte, udpHeaderLen, udpHeaderLen+len(p))
	binary.BigEndian.PutUint16(d[0:], r.port)
	binary.BigEndian.PutUint16(d[2:], to.Port())
	binary.BigEndian.PutUint16(d[4:], uint16(udpHeaderLen+len(p)))
	d = append(d, p...)
	_, err := c.WriteToIP(d, &net.IPAddr{IP: to.Addr().AsSlice()})
	return err
}

// close ends the sideband and closes the sockets, waiting for the readers.
func (r *rawPort) close() {
	r.shutdown()
	for _, c := range r.conns() {
		c.Close()
	}
	r.reads.Wait()
}
