package wg

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/wire-mesh/wire/stun"
)

// STUN retransmission timing (RFC 8489 section 6.2.1), as in stun.Query.
const (
	initialRTO = 500 * time.Millisecond
	maxRTO     = 8 * time.Second
)

// stunBind is the userspace engine's conn.Bind: wireguard-go's own, on
// which Discover also sends STUN requests, taking the answers out of what
// WireGuard receives. It opens its sockets inside the engine's network
// namespace, whichever thread wireguard-go opens it from.
type stunBind struct {
	conn.Bind
	ns   namespace
	port atomic.Uint32 // 0 while closed

	waiting atomic.Int32 // len(pending), read without the lock
	mu      sync.Mutex
	pending map[stun.TxID]discovery
	probes  map[uint64]probeWait
	session chan struct{} // closed by Close: ends the relay receive func
	done    chan struct{} // closed by shutdown
	once    sync.Once

	relay *relayPath
}

// discovery is a Discover waiting for its answer.
type discovery struct {
	server netip.AddrPort
	answer chan netip.AddrPort // buffered: the first answer wins
}

func newBind(inner conn.Bind, ns namespace) *stunBind {
	return &stunBind{
		Bind:    inner,
		ns:      ns,
		pending: make(map[stun.TxID]discovery),
		probes:  make(map[uint64]probeWait),
		done:    make(chan struct{}),
		relay:   newRelayPath(),
	}
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
		fns[i] = b.filter(fn)
	}
	session := make(chan struct{})
	b.mu.Lock()
	b.session = session
	b.mu.Unlock()
	fns = append(fns, b.relay.receive(session))
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

// filter returns fn with the STUN datagrams taken out of each batch: their
// sizes are set to zero, which the ReceiveFunc contract allows and
// wireguard-go skips. Nothing is moved: wireguard-go reads packet i from
// the buffer it passed as bufs[i], so packets cannot trade places, and
// copying them down would cost what stock wireguard-go does not pay.
func (b *stunBind) filter(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		for i := range n {
			switch p := bufs[i][:sizes[i]]; {
			case stun.Is(p):
				b.deliver(p, eps[i])
				sizes[i] = 0
			case isProbe(p):
				b.handleProbe(p, eps[i])
				sizes[i] = 0
			}
		}
		return n, err
	}
}

// deliver hands the STUN answer p from the endpoint from to the Discover
// waiting for it, if any; anything else is dropped.
func (b *stunBind) deliver(p []byte, from conn.Endpoint) {
	if b.waiting.Load() == 0 {
		return
	}
	tx, addr, err := stun.ParseResponse(p)
	if err != nil {
		return
	}
	b.mu.Lock()
	d, ok := b.pending[tx]
	b.mu.Unlock()
	if !ok || endpointAddr(from) != d.server {
		return
	}
	select {
	case d.answer <- addr:
	default:
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

// discover sends STUN Binding requests to server from the WireGuard port,
// again after 500ms, then after twice the wait before (up to 8s), until
// the answer comes, ctx is done or the bind shuts down.
func (b *stunBind) discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	server = unmap(server)
	ep, err := b.ParseEndpoint(server.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("wg: STUN server address %v: %w", server, err)
	}
	tx := stun.NewTxID()
	answer := b.expect(tx, server)
	defer b.forget(tx)
	timer := time.NewTimer(initialRTO)
	defer timer.Stop()
	for sent, rto := 1, initialRTO; ; sent, rto = sent+1, min(2*rto, maxRTO) {
		if err := b.send(stun.Request(tx), ep); err != nil {
			return netip.AddrPort{}, fmt.Errorf("wg: send STUN request to %v: %w", server, err)
		}
		timer.Reset(rto)
		select {
		case addr := <-answer:
			return addr, nil
		case <-ctx.Done():
			return netip.AddrPort{}, fmt.Errorf("wg: STUN server %v did not answer (%d requests sent): %w", server, sent, ctx.Err())
		case <-b.done:
			return netip.AddrPort{}, fmt.Errorf("wg: engine closed while asking STUN server %v: %w", server, net.ErrClosed)
		case <-timer.C:
		}
	}
}

// send sends one datagram from the WireGuard port.
func (b *stunBind) send(p []byte, ep conn.Endpoint) error {
	if b.port.Load() == 0 {
		return fmt.Errorf("the WireGuard port is not open: %w", net.ErrClosed)
	}
	return b.Send([][]byte{p}, ep)
}

func (b *stunBind) expect(tx stun.TxID, server netip.AddrPort) chan netip.AddrPort {
	d := discovery{server: server, answer: make(chan netip.AddrPort, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending[tx] = d
	b.waiting.Store(int32(len(b.pending)))
	return d.answer
}

func (b *stunBind) forget(tx stun.TxID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pending, tx)
	b.waiting.Store(int32(len(b.pending)))
}

// shutdown ends every discovery, for good.
func (b *stunBind) shutdown() {
	b.once.Do(func() { close(b.done) })
}
