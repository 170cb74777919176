package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/wire-mesh/wire/relay"
)

// A peer reached through the relay has an endpoint in 100::/64, the IPv6
// discard-only block (RFC 6666), whose low 32 bits are the peer's VPN
// address: WireGuard's configuration and roaming carry it like any other
// endpoint, the bind sends it through the relay, and were it ever to leak
// to the network, routers would discard it.
var relayPrefix = netip.MustParsePrefix("100::/64")

// RelayEndpoint is the endpoint that sends to the peer with VPN address
// vpnIP through the relay.
func RelayEndpoint(vpnIP netip.Addr) netip.AddrPort {
	b := relayPrefix.Addr().As16()
	v4 := vpnIP.Unmap().As4()
	copy(b[12:], v4[:])
	return netip.AddrPortFrom(netip.AddrFrom16(b), 1)
}

// IsRelayEndpoint says whether ep goes through the relay, and to whom.
func IsRelayEndpoint(ep netip.AddrPort) (netip.Addr, bool) {
	if !ep.Addr().Is6() || !relayPrefix.Contains(ep.Addr()) {
		return netip.Addr{}, false
	}
	b := ep.Addr().As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// relayEndpoint is a conn.Endpoint through the relay.
type relayEndpoint struct {
	peer netip.Addr // VPN address
	ap   netip.AddrPort
}

func newRelayEndpoint(peer netip.Addr) *relayEndpoint {
	return &relayEndpoint{peer: peer, ap: RelayEndpoint(peer)}
}

func (e *relayEndpoint) ClearSrc()           {}
func (e *relayEndpoint) SrcToString() string { return "" }
func (e *relayEndpoint) DstToString() string { return e.ap.String() }
func (e *relayEndpoint) DstToBytes() []byte  { b, _ := e.ap.MarshalBinary(); return b }
func (e *relayEndpoint) DstIP() netip.Addr   { return e.ap.Addr() }
func (e *relayEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// relayPacket is one packet the pump read from the relay.
type relayPacket struct {
	buf  *[]byte
	n    int
	peer netip.Addr
}

// relayPath holds the relay connection the bind sends through, and a pump
// that reads it into a channel that WireGuard's receive loop drains.
type relayPath struct {
	mu   sync.Mutex
	conn *relay.Conn
	in   chan relayPacket
	bufs sync.Pool
}

func newRelayPath() *relayPath {
	p := &relayPath{in: make(chan relayPacket, 1024)}
	p.bufs.New = func() any {
		b := make([]byte, 65535+relay.DataOverhead)
		return &b
	}
	return p
}

// set replaces the relay connection (nil: none) and starts pumping the
// new one. The caller owns the connections; closing one ends its pump.
func (p *relayPath) set(c *relay.Conn) {
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	if c != nil {
		go p.pump(c)
	}
}

func (p *relayPath) current() *relay.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

// pumpBatch is how many packets the pump reads from the relay at a time.
const pumpBatch = 64

// pump reads c until it is closed. It also takes in the relay's answers
// to HELLOs, which is why it runs whether or not WireGuard listens.
func (p *relayPath) pump(c *relay.Conn) {
	var (
		held  [pumpBatch]*[]byte // buffers from the pool, one per slot
		bufs  [pumpBatch][]byte
		sizes [pumpBatch]int
		peers [pumpBatch]netip.Addr
	)
	for i := range held {
		held[i] = p.bufs.Get().(*[]byte)
		bufs[i] = *held[i]
	}
	defer func() {
		for _, b := range held {
			p.bufs.Put(b)
		}
	}()
	for {
		n, err := c.ReadBatch(bufs[:], sizes[:], peers[:])
		if err != nil {
			return
		}
		for i := range n {
			select {
			case p.in <- relayPacket{held[i], sizes[i], peers[i]}:
				held[i] = p.bufs.Get().(*[]byte)
				bufs[i] = *held[i]
			default: // WireGuard is not keeping up (or not open): drop, as a NIC would
			}
		}
	}
}

// receive is a conn.ReceiveFunc for the packets that came through the
// relay: it waits for one, then takes as many more as are queued, up to
// the batch; it returns when done closes (the bind closed).
func (p *relayPath) receive(done <-chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case pkt := <-p.in:
			p.take(pkt, 0, bufs, sizes, eps)
		case <-done:
			return 0, net.ErrClosed
		}
		n := 1
		for ; n < len(bufs); n++ {
			select {
			case pkt := <-p.in:
				p.take(pkt, n, bufs, sizes, eps)
				continue
			default:
			}
			break
		}
		return n, nil
	}
}

func (p *relayPath) take(pkt relayPacket, i int, bufs [][]byte, sizes []int, eps []conn.Endpoint) {
	sizes[i] = copy(bufs[i], (*pkt.buf)[:pkt.n])
	eps[i] = newRelayEndpoint(pkt.peer)
	p.bufs.Put(pkt.buf)
}

// errNoRelay says a packet for the relay found no relay connection.
var errNoRelay = errors.New("no relay connection")

func (p *relayPath) send(bufs [][]byte, ep *relayEndpoint) error {
	c := p.current()
	if c == nil {
		return fmt.Errorf("wg: send to %v through the relay: %w", ep.peer, errNoRelay)
	}
	return c.WriteBatch(bufs, ep.peer)
}
