package filter

import "encoding/binary"

// ICMP types the filter tells apart.
const (
	icmpEchoReply    = 0
	icmpUnreachable  = 3
	icmpSourceQuench = 4
	icmpRedirect     = 5
	icmpEchoRequest  = 8
	icmpTimeExceeded = 11
	icmpParamProblem = 12
)

// Header sizes and fields.
const (
	ipv4MinHeaderLen = 20
	fragOffsetMask   = 0x1fff
	icmpHeaderLen    = 8 // and where an ICMP error's original packet starts
	udpHeaderLen     = 8
	tcpMinHeaderLen  = 20
	tcpFlagsOffset   = 13
	tcpFIN, tcpSYN   = 0x01, 0x02
	tcpRST, tcpACK   = 0x04, 0x10
	// embeddedTransport is how much of the original transport header an
	// ICMP error carries, at least (RFC 792).
	embeddedTransport = 8
)

// The protocols as the IP header has them.
const (
	protoICMP = uint8(ICMP)
	protoTCP  = uint8(TCP)
	protoUDP  = uint8(UDP)
)

// packet is what the filter reads of an IPv4 packet. For TCP and UDP,
// sport and dport are the ports; for an ICMP echo (request or reply),
// both are its identifier, so that an echo and its reply are one flow, as
// in Linux's conntrack.
type packet struct {
	src, dst     [4]byte
	proto        uint8
	sport, dport uint16
	icmpType     uint8
	tcpFlags     uint8
	// later says the packet is a fragment other than the first: it has
	// no transport header.
	later bool
	// transport is the transport header and payload (nil for later
	// fragments).
	transport []byte
}

// parse reads an IPv4 packet; false if b is not one, or is cut short of
// its own total length or of its transport header. A packet with a
// protocol the filter knows no header of (not TCP, UDP or ICMP) parses
// with zero ports.
func parse(b []byte) (packet, bool) {
	var p packet
	hlen, ok := ipv4Header(b)
	if !ok {
		return p, false
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < hlen || total > len(b) {
		return p, false
	}
	p.readAddrs(b)
	if binary.BigEndian.Uint16(b[6:8])&fragOffsetMask != 0 {
		p.later = true
		return p, true
	}
	p.transport = b[hlen:total]
	return p, p.readTransport(p.transport)
}

// ipv4Header returns the header length of b's IPv4 header; false if b is
// not IPv4 or is shorter than its header.
func ipv4Header(b []byte) (int, bool) {
	if len(b) < ipv4MinHeaderLen || b[0]>>4 != 4 {
		return 0, false
	}
	hlen := int(b[0]&0x0f) * 4
	return hlen, hlen >= ipv4MinHeaderLen && hlen <= len(b)
}

func (p *packet) readAddrs(b []byte) {
	p.proto = b[9]
	p.src = [4]byte(b[12:16])
	p.dst = [4]byte(b[16:20])
}

// readTransport reads the ports, flags or ICMP type of t; false if t is
// shorter than the header the filter needs.
func (p *packet) readTransport(t []byte) bool {
	switch p.proto {
	case protoTCP:
		if len(t) < tcpMinHeaderLen {
			return false
		}
		p.tcpFlags = t[tcpFlagsOffset]
	case protoUDP:
		if len(t) < udpHeaderLen {
			return false
		}
	case protoICMP:
		if len(t) < icmpHeaderLen {
			return false
		}
		p.readICMP(t)
		return true
	default:
		return true
	}
	p.sport = binary.BigEndian.Uint16(t[0:2])
	p.dport = binary.BigEndian.Uint16(t[2:4])
	return true
}

func (p *packet) readICMP(t []byte) {
	p.icmpType = t[0]
	if p.isEcho() {
		p.sport = binary.BigEndian.Uint16(t[4:6])
		p.dport = p.sport
	}
}

func (p *packet) isEcho() bool {
	return p.proto == protoICMP && (p.icmpType == icmpEchoRequest || p.icmpType == icmpEchoReply)
}

// isICMPError says whether p is an ICMP error, which carries the start of
// the packet it is about. Redirects count: like errors, they pass only as
// part of a connection this node has.
func (p *packet) isICMPError() bool {
	if p.proto != protoICMP {
		return false
	}
	switch p.icmpType {
	case icmpUnreachable, icmpSourceQuench, icmpRedirect, icmpTimeExceeded, icmpParamProblem:
		return true
	}
	return false
}

// embedded parses the packet an ICMP error p is about: its IP header and
// the first 8 bytes of its transport header, enough for the ports or the
// echo identifier. False if that is not there, or was a later fragment.
func (p *packet) embedded() (packet, bool) {
	var e packet
	b := p.transport[icmpHeaderLen:]
	hlen, ok := ipv4Header(b)
	if !ok || len(b) < hlen+embeddedTransport {
		return e, false
	}
	e.readAddrs(b)
	if binary.BigEndian.Uint16(b[6:8])&fragOffsetMask != 0 {
		return e, false
	}
	t := b[hlen:]
	switch e.proto {
	case protoTCP, protoUDP:
		e.sport = binary.BigEndian.Uint16(t[0:2])
		e.dport = binary.BigEndian.Uint16(t[2:4])
	case protoICMP:
		e.readICMP(t)
		return e, e.isEcho()
	default:
		return e, false
	}
	return e, true
}

// isOpening says whether p is a TCP SYN, which opens a connection.
func (p *packet) isOpening() bool {
	return p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN
}

// isClosing says whether p is a TCP FIN or RST, which ends a connection.
func (p *packet) isClosing() bool {
	return p.proto == protoTCP && p.tcpFlags&(tcpFIN|tcpRST) != 0
}
