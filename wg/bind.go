package wg

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
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
	// crossings breaks the tie between crossed handshakes (crossing.go);
	// late carries the initiations it held back to WireGuard.
	crossings crossings
	late      chan lateMessage
	// mac1 is the key of the mac1 of handshakes meant for this device,
	// nil until it has a private key (see meantFor).
	mac1 atomic.Pointer[[blake2s.Size]byte]
	// initiation, if set, sees every handshake initiation before
	// wireguard-go does, on every path (lazyPeers.initiation). Set it
	// before the bind is opened.
	initiation func([]byte)
}

func newBind(inner conn.Bind, ns namespace) *stunBind {
	b := &stunBind{Bind: inner, ns: ns, relay: newRelayPath(), late: make(chan lateMessage, 16)}
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
	for len(b.late) > 0 { // held in a session that ended
		<-b.late
	}
	session := make(chan struct{})
	b.mu.Lock()
	b.session = session
	b.mu.Unlock()
	fns = append(fns, b.filter(b.relay.receive(session), false), b.lateReceive(session))
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

// Send sends through the relay to relay endpoints, else directly, noting
// WireGuard's handshake initiations (crossing.go).
func (b *stunBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		if isHandshake(p) {
			b.crossings.sent(p, endpointAddr(ep), time.Now())
		}
	}
	return b.send(bufs, ep)
}

// send sends bufs to ep as they are.
func (b *stunBind) send(bufs [][]byte, ep conn.Endpoint) error {
	if r, ok := ep.(*relayEndpoint); ok {
		return b.relay.send(bufs, r)
	}
	return b.Bind.Send(bufs, ep)
}

// filter returns fn with the sideband's datagrams taken out of each batch
// (if sideband: the relay carries none), and the initiations that cross
// WireGuard's own and lose (see crossing.go), whose end is sent
// WireGuard's again; it shows the other initiations to b.initiation. What
// is taken out has its size set to zero, which the ReceiveFunc contract
// allows and wireguard-go skips. Nothing is moved: wireguard-go reads
// packet i from the buffer it passed as bufs[i], so packets cannot trade
// places, and copying them down would cost what stock wireguard-go does
// not pay.
func (b *stunBind) filter(fn conn.ReceiveFunc, sideband bool) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		for i := range n {
			p := bufs[i][:sizes[i]]
			switch {
			case sideband && isSideband(p):
				b.handle(p, endpointAddr(eps[i]))
				sizes[i] = 0
			case isHandshake(p):
				if b.crossed(p, eps[i]) {
					sizes[i] = 0
				} else if b.initiation != nil && isInitiation(p) {
					b.initiation(p)
				}
			}
		}
		return n, err
	}
}

// setKey says which private key the device has (for meantFor).
func (b *stunBind) setKey(private Key) {
	k := mac1Key(private.PublicKey())
	b.mac1.Store(&k)
}

// crossed takes in a handshake message p from ep, and says whether it is
// an initiation taken out for crossing WireGuard's own (crossing.go): its
// end is sent WireGuard's again, or it is handed on later through the
// late receive func, unless an answer to WireGuard's makes it needless.
// A message not meant for this device's key is WireGuard's to drop, and
// changes nothing here.
func (b *stunBind) crossed(p []byte, ep conn.Endpoint) bool {
	if key := b.mac1.Load(); key == nil || !meantFor(p, key) {
		return false
	}
	from := endpointAddr(ep)
	v, again := b.crossings.receive(p, from, time.Now())
	switch v {
	case drop:
		b.send([][]byte{again}, ep)
	case hold:
		msg := append([]byte(nil), p...)
		time.AfterFunc(answerWait, func() {
			if b.crossings.release(msg, from) {
				select {
				case b.late <- lateMessage{msg, ep}:
				default: // lost, as a datagram may be
				}
			}
		})
	}
	return v != pass
}

// lateMessage is a datagram handed to WireGuard after the others.
type lateMessage struct {
	b  []byte
	ep conn.Endpoint
}

// lateReceive is the receive func of the datagrams held back, until done
// is closed.
func (b *stunBind) lateReceive(done <-chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case m := <-b.late:
			if b.initiation != nil {
				b.initiation(m.b)
			}
			sizes[0], eps[0] = copy(bufs[0], m.b), m.ep
			return 1, nil
		case <-done:
			return 0, net.ErrClosed
		}
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
