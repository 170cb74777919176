package wg

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// stunBind is the userspace engine's conn.Bind: wireguard-go's own, which
// also carries the engine's sideband (STUN and probes), taking its
// datagrams out of what WireGuard receives. It opens its sockets inside
// the engine's network namespace, whichever thread wireguard-go opens it
// from.
type stunBind struct {
	conn.Bind
	*sideband
	ns   namespace
	port atomic.Uint32 // 0 while closed

	mu      sync.Mutex
	session chan struct{} // closed by Close: ends the relay receive func

	relay *relayPath
	// initiation, if set, sees every handshake initiation before
	// wireguard-go does, on every path (lazyPeers.initiation). Set it
	// before the bind is opened.
	initiation func([]byte)
}

func newBind(inner conn.Bind, ns namespace) *stunBind {
	b := &stunBind{Bind: inner, ns: ns, relay: newRelayPath()}
	b.sideband = newSideband(b.sendSideband)
	return b
}

// sendSideband sends one datagram from the WireGuard port.
func (b *stunBind) sendSideband(p []byte, to netip.AddrPort) error {
	if b.port.Load() == 0 {
		return fmt.Errorf("the WireGuard port is not open: %w", net.ErrClosed)
	}
	ep, err := b.ParseEndpoint(to.String())
	if err != nil {
		return err
	}
	return b.Send([][]byte{p}, ep)
}

var _ conn.Bind = (*stunBind)(nil)

// Open opens the sockets in the engine's namespace, and wraps each
// receive function in the STUN filter.
func (b *stunBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	var fns []conn.ReceiveFunc
	var actual uint16
	err := b.ns.run(func() (err error) {
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = b.filter(fn, true)
	}
	session := make(chan struct{})
	b.mu.Lock()
	b.session = session
	b.mu.Unlock()
	fns = append(fns, b.filter(b.relay.receive(session), false))
	b.port.Store(uint32(actual))
	return fns, actual, nil
}

func (b *stunBind) Close() error {
	b.port.Store(0)
	b.mu.Lock()
	if b.session != nil {
		close(b.session)
		b.session = nil
	}
	b.mu.Unlock()
	return b.Bind.Close()
}

// ParseEndpoint knows relay endpoints besides the inner bind's.
func (b *stunBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if peer, ok := IsRelayEndpoint(ap); ok {
			return newRelayEndpoint(peer), nil
		}
	}
	return b.Bind.ParseEndpoint(s)
}

// Send sends through the relay to relay endpoints, else directly.
func (b *stunBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if r, ok := ep.(*relayEndpoint); ok {
		return b.relay.send(bufs, r)
	}
	return b.Bind.Send(bufs, ep)
}

// filter returns fn with the sideband's datagrams taken out of each batch
// (if sideband: the relay carries none), and shows the handshake
// initiations to b.initiation. The sideband's sizes are set to zero, which
// the ReceiveFunc contract allows and wireguard-go skips. Nothing is
// moved: wireguard-go reads packet i from the buffer it passed as
// bufs[i], so packets cannot trade places, and copying them down would
// cost what stock wireguard-go does not pay.
func (b *stunBind) filter(fn conn.ReceiveFunc, sideband bool) conn.ReceiveFunc {
	if !sideband && b.initiation == nil {
		return fn
	}
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		for i := range n {
			p := bufs[i][:sizes[i]]
			switch {
			case sideband && isSideband(p):
				b.handle(p, endpointAddr(eps[i]))
				sizes[i] = 0
			case b.initiation != nil && isInitiation(p):
				b.initiation(p)
			}
		}
		return n, err
	}
}

// endpointAddr is where ep sends to, unmapped.
func endpointAddr(ep conn.Endpoint) netip.AddrPort {
	if std, ok := ep.(*conn.StdNetEndpoint); ok {
		return unmap(std.AddrPort)
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return unmap(ap)
}
