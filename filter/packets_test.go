package filter

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built packets for the tests.

// ip4 is an IPv4 packet from src to dst carrying transport. fragment is
// the flags and fragment offset field.
func ip4(src, dst string, proto uint8, fragment uint16, transport []byte) []byte {
	b := make([]byte, 20, 20+len(transport))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(transport)))
	binary.BigEndian.PutUint16(b[6:], fragment)
	b[8] = 64
	b[9] = proto
	a, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], a[:])
	copy(b[16:], d[:])
	return append(b, transport...)
}

// withOptions gives p an IP header with 8 bytes of options (NOPs).
func withOptions(p []byte) []byte {
	hlen := int(p[0]&0x0f) * 4
	out := append([]byte{}, p[:hlen]...)
	out = append(out, 1, 1, 1, 1, 1, 1, 1, 0)
	out = append(out, p[hlen:]...)
	out[0] = 0x40 | byte(hlen/4+2)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

// moreFragments is the flag of a fragment that others follow.
const moreFragments = 0x2000

func tcpSeg(sport, dport uint16, flags byte) []byte {
	t := make([]byte, 20)
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	t[12] = 5 << 4
	t[13] = flags
	return append(t, "data"...)
}

func udpDgram(sport, dport uint16) []byte {
	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], 12)
	return append(u, "data"...)
}

func icmpMsg(typ uint8, id uint16) []byte {
	m := make([]byte, 8)
	m[0] = typ
	binary.BigEndian.PutUint16(m[4:], id)
	return append(m, "ping"...)
}

// icmpErr is an ICMP error of typ about original: its IP header and the
// first 8 bytes after it.
func icmpErr(typ uint8, original []byte) []byte {
	m := make([]byte, 8)
	m[0] = typ
	if typ == icmpUnreachable {
		m[1] = 4 // fragmentation needed
		binary.BigEndian.PutUint16(m[6:], 1280)
	}
	hlen := int(original[0]&0x0f) * 4
	return append(m, original[:min(len(original), hlen+8)]...)
}

// The node under test and its peers.
const (
	me       = "10.99.0.1"
	admin    = "10.99.0.2" // tcp:22, udp:53, *:8000-8100
	pinger   = "10.99.0.3" // icmp
	server   = "10.99.0.4" // no rules: a server this node uses
	webOnly  = "10.99.0.5" // tcp:443, so no ping
	tunneler = "10.99.0.6" // protocol 47 (GRE)
	protoGRE = 47
)

func testRules() Rules {
	return Rules{
		netip.MustParseAddr(admin):    {{TCP, PortRange{22, 22}}, {UDP, PortRange{53, 53}}, {Any, PortRange{8000, 8100}}},
		netip.MustParseAddr(pinger):   {{ICMP, AllPorts}},
		netip.MustParseAddr(webOnly):  {{TCP, PortRange{443, 443}}},
		netip.MustParseAddr(tunneler): {{Proto(protoGRE), AllPorts}},
	}
}

func tcpIn(from string, sport, dport uint16, flags byte) []byte {
	return ip4(from, me, protoTCP, 0, tcpSeg(sport, dport, flags))
}

func tcpOut(to string, sport, dport uint16, flags byte) []byte {
	return ip4(me, to, protoTCP, 0, tcpSeg(sport, dport, flags))
}

func udpIn(from string, sport, dport uint16) []byte {
	return ip4(from, me, protoUDP, 0, udpDgram(sport, dport))
}

func udpOut(to string, sport, dport uint16) []byte {
	return ip4(me, to, protoUDP, 0, udpDgram(sport, dport))
}

func icmpIn(from string, typ uint8, id uint16) []byte {
	return ip4(from, me, protoICMP, 0, icmpMsg(typ, id))
}

func icmpOut(to string, typ uint8, id uint16) []byte {
	return ip4(me, to, protoICMP, 0, icmpMsg(typ, id))
}

// errorIn is an ICMP error from `from` about original, a packet this node
// sent.
func errorIn(from string, typ uint8, original []byte) []byte {
	return ip4(from, me, protoICMP, 0, icmpErr(typ, original))
}

// ipv6 is an IPv6 UDP packet.
func ipv6() []byte {
	p := make([]byte, 40)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], 12)
	p[6] = protoUDP
	return append(p, udpDgram(1000, 53)...)
}
