package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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

// relayPath holds the relay connection the bind sends through, and a pump
// that reads it into a queue of inboxes that WireGuard's receive loop
// drains: the packets cross from the pump to WireGuard in the buffers the
// kernel wrote them to, and are copied once, into WireGuard's.
type relayPath struct {
	mu      sync.Mutex
	conn    *relay.Conn
	in      chan *relay.Inbox
	queued  atomic.Int64 // packets in the inboxes in in, and in the one being taken
	inboxes sync.Pool
}

const (
	// relayQueue is how many packets may wait for WireGuard, as a NIC's
	// ring: 1,024 are some 6 ms at 2 Gbit/s.
	relayQueue = 1024
	// relayInboxes is how many inboxes may wait, however few packets
	// each holds (a stream's hold what one TLS record brought).
	relayInboxes = 64
)

func newRelayPath() *relayPath {
	p := &relayPath{in: make(chan *relay.Inbox, relayInboxes)}
	p.inboxes.New = func() any { return relay.NewInbox() }
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

// pump reads c until it is closed. It also takes in the relay's answers
// to HELLOs, which is why it runs whether or not WireGuard listens.
func (p *relayPath) pump(c *relay.Conn) {
	for {
		in := p.inboxes.Get().(*relay.Inbox)
		if err := c.Receive(in); err != nil {
			p.inboxes.Put(in)
			return
		}
		if n := int64(in.Len()); p.queued.Add(n) <= relayQueue {
			select {
			case p.in <- in:
				continue
			default:
			}
		}
		// WireGuard is not keeping up (or not open): drop, as a NIC would.
		p.queued.Add(-int64(in.Len()))
		p.inboxes.Put(in)
	}
}

// receive is a conn.ReceiveFunc for the packets that came through the
// relay: it waits for an inbox, then takes its packets and those of the
// inboxes queued behind it, up to the batch; it returns when done closes
// (the bind closed). wireguard-go calls it from one goroutine, which owns
// what it has taken.
func (p *relayPath) receive(done <-chan struct{}) conn.ReceiveFunc {
	var (
		in   *relay.Inbox   // being taken
		last *relayEndpoint // the endpoint of the last packet, for the next from the same peer
	)
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := 0
		for n < len(bufs) {
			switch {
			case in != nil:
			case n > 0: // more only if queued
				select {
				case in = <-p.in:
				default:
					return n, nil
				}
			default:
				select {
				case in = <-p.in:
				case <-done:
					return 0, net.ErrClosed
				}
			}
			payload, peer, ok := in.Next()
			if !ok {
				p.queued.Add(-int64(in.Len()))
				p.inboxes.Put(in)
				in = nil
				continue
			}
			if last == nil || last.peer != peer {
				last = newRelayEndpoint(peer)
			}
			sizes[n], eps[n] = copy(bufs[n], payload), last
			n++
		}
		return n, nil
	}
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
