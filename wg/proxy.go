package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/relay"
)

// A relayProxy lets kernel WireGuard, which only sends plain UDP, reach
// peers through the relay. Each relayed peer gets a proxy socket on
// 127.0.0.1, and the kernel is told that the peer's endpoint is that
// socket: what WireGuard sends there goes through the relay to the peer,
// and what the peer sends through the relay is written to WireGuard's
// port from the peer's socket, so that WireGuard sees it come from the
// peer's endpoint. A peer that relays to us while WireGuard has another
// endpoint for it gets a socket too: WireGuard roams to it, and so answers
// through the relay.
//
// Of two handshake initiations that cross through the relay, it hands
// WireGuard only one (see crossing.go).
//
// The forwarding paths allocate nothing once the sockets exist.
type relayProxy struct {
	// wgPort is the port WireGuard listens on, zero while it listens on
	// none: packets from the relay are dropped then.
	wgPort func() int
	// listen opens a UDP socket on 127.0.0.1 (in the engine's network
	// namespace).
	listen func() (*net.UDPConn, error)

	conn atomic.Pointer[relay.Conn]

	mu      sync.Mutex
	sockets map[netip.Addr]*proxySocket // by the peer's VPN address
	ports   map[uint16]netip.Addr       // the peers of the sockets, by port
	closed  bool
	readers sync.WaitGroup // one per socket
	pumps   sync.WaitGroup // one per relay connection set
}

// proxySocket is one relayed peer's socket.
type proxySocket struct {
	peer netip.Addr // VPN address
	pc   *net.UDPConn
	addr netip.AddrPort // pc's, the endpoint WireGuard has for peer
	// handshake is WireGuard's last initiation to peer.
	handshake crossing
}

var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// maxUDP is the longest UDP payload.
const maxUDP = 65535

// newRelayProxy returns a proxy that sends to WireGuard on 127.0.0.1 at
// wgPort(), from sockets that listen opens (nil: on 127.0.0.1 in the
// current network namespace).
func newRelayProxy(wgPort func() int, listen func() (*net.UDPConn, error)) *relayProxy {
	if listen == nil {
		listen = listenProxySocket
	}
	return &relayProxy{
		wgPort:  wgPort,
		listen:  listen,
		sockets: make(map[netip.Addr]*proxySocket),
		ports:   make(map[uint16]netip.Addr),
	}
}

// listenProxySocket opens a UDP socket on 127.0.0.1 with a port of the
// system's choosing.
func listenProxySocket() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
}

// setConn makes c (nil: none) the relay connection, and reads it until it
// is closed: the caller owns it. Packets read from a connection that was
// replaced still reach WireGuard.
func (p *relayProxy) setConn(c *relay.Conn) {
	if old := p.conn.Swap(c); old == c || c == nil {
		return
	}
	p.pumps.Add(1)
	go p.pump(c)
}

// endpoint returns the address of peer's proxy socket, opening it if
// there is none.
func (p *relayProxy) endpoint(peer netip.Addr) (netip.AddrPort, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.socket(peer)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return s.addr, nil
}

// socket returns peer's socket, opening it if there is none. p.mu is held.
func (p *relayProxy) socket(peer netip.Addr) (*proxySocket, error) {
	peer = peer.Unmap()
	if s := p.sockets[peer]; s != nil {
		return s, nil
	}
	if p.closed {
		return nil, fmt.Errorf("wg: relay proxy for %v: %w", peer, net.ErrClosed)
	}
	pc, err := p.listen()
	if err != nil {
		return nil, fmt.Errorf("wg: open the relay proxy socket for %v: %w", peer, err)
	}
	s := &proxySocket{peer: peer, pc: pc, addr: unmap(pc.LocalAddr().(*net.UDPAddr).AddrPort())}
	p.sockets[peer] = s
	p.ports[s.addr.Port()] = peer
	p.readers.Add(1)
	go p.read(s)
	return s, nil
}

// retain closes the sockets of the peers not in keep (unmapped).
func (p *relayProxy) retain(keep map[netip.Addr]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for peer, s := range p.sockets {
		if !keep[peer] {
			p.drop(s)
		}
	}
}

// release closes the sockets of the given peers.
func (p *relayProxy) release(peers []netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, peer := range peers {
		if s := p.sockets[peer.Unmap()]; s != nil {
			p.drop(s)
		}
	}
}

// drop closes s and forgets it. p.mu is held.
func (p *relayProxy) drop(s *proxySocket) {
	s.pc.Close()
	delete(p.sockets, s.peer)
	delete(p.ports, s.addr.Port())
}

// peerOf says whether ep is a proxy socket, and whose.
func (p *relayProxy) peerOf(ep netip.AddrPort) (netip.Addr, bool) {
	if unmap(ep).Addr() != loopback {
		return netip.Addr{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	peer, ok := p.ports[ep.Port()]
	return peer, ok
}

// close closes the sockets and waits for their readers to end. Packets
// from the relay are dropped afterwards; the pumps end when the relay
// connections they read are closed.
func (p *relayProxy) close() {
	p.mu.Lock()
	p.closed = true
	for _, s := range p.sockets {
		p.drop(s)
	}
	p.mu.Unlock()
	p.conn.Store(nil)
	p.readers.Wait()
}

// read forwards what WireGuard sends to s through the relay, until s is
// closed. It owns one buffer.
func (p *relayProxy) read(s *proxySocket) {
	defer p.readers.Done()
	buf := make([]byte, maxUDP)
	for {
		n, from, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.toRelay(s, buf[:n], from)
	}
}

// toRelay sends b, which came to s from from, through the relay to s's
// peer if it came from WireGuard.
func (p *relayProxy) toRelay(s *proxySocket, b []byte, from netip.AddrPort) {
	port := p.wgPort()
	if port == 0 || unmap(from) != netip.AddrPortFrom(loopback, uint16(port)) {
		return // not WireGuard: no other program may use the relay
	}
	if isHandshake(b) {
		s.handshake.sent(b, time.Now())
	}
	p.write(b, s.peer)
}

// write sends b through the relay to peer.
func (p *relayProxy) write(b []byte, peer netip.Addr) {
	if c := p.conn.Load(); c != nil {
		c.WriteTo(b, peer) // lost like any UDP packet if it fails
	}
}

// pump reads c until it is closed, and hands each packet to WireGuard. It
// also takes in the relay's answers to HELLOs, which is why it runs
// whether or not WireGuard listens.
func (p *relayProxy) pump(c *relay.Conn) {
	defer p.pumps.Done()
	in := relay.NewInbox()
	for {
		if err := c.Receive(in); err != nil {
			return
		}
		for {
			b, peer, ok := in.Next()
			if !ok {
				break
			}
			p.toWireGuard(peer, b)
		}
	}
}

// toWireGuard writes b, which peer sent through the relay, to WireGuard
// from peer's socket, opened if there is none.
func (p *relayProxy) toWireGuard(peer netip.Addr, b []byte) {
	port := p.wgPort()
	if port == 0 {
		return
	}
	p.mu.Lock()
	s, err := p.socket(peer)
	p.mu.Unlock()
	if err != nil {
		return
	}
	to := netip.AddrPortFrom(loopback, uint16(port))
	if isHandshake(b) {
		switch v, again := s.handshake.receive(b, time.Now()); v { // see crossing.go
		case drop:
			p.write(again, peer)
			return
		case hold:
			msg := append([]byte(nil), b...)
			time.AfterFunc(answerWait, func() {
				if s.handshake.release(msg) {
					s.pc.WriteToUDPAddrPort(msg, to)
				}
			})
			return
		}
	}
	s.pc.WriteToUDPAddrPort(b, to)
}
