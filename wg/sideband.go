package wg

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/stun"
)

// STUN retransmission timing (RFC 8489 section 6.2.1), as in stun.Query.
const (
	initialRTO = 500 * time.Millisecond
	maxRTO     = 8 * time.Second
)

// sideband is what travels on the WireGuard port besides WireGuard: the
// STUN Binding requests that learn the port's public mapping, and the
// direct-path probes a node sends and answers. Neither can be mistaken for
// WireGuard (see isProbe). An engine feeds the sideband what arrives on
// its port (handle) and gives it a way to send from there.
type sideband struct {
	sendTo func(p []byte, to netip.AddrPort) error

	waiting atomic.Int32 // len(pending), read without the lock
	mu      sync.Mutex
	pending map[stun.TxID]discovery
	probes  map[uint64]probeWait
	done    chan struct{} // closed by shutdown
	once    sync.Once
}

// discovery is a Discover waiting for its answer.
type discovery struct {
	server netip.AddrPort
	answer chan netip.AddrPort // buffered: the first answer wins
}

func newSideband(sendTo func(p []byte, to netip.AddrPort) error) *sideband {
	return &sideband{
		sendTo:  sendTo,
		pending: make(map[stun.TxID]discovery),
		probes:  make(map[uint64]probeWait),
		done:    make(chan struct{}),
	}
}

// isSideband says whether p, which arrived on the WireGuard port, is the
// sideband's rather than WireGuard's.
func isSideband(p []byte) bool { return stun.Is(p) || isProbe(p) }

// handle takes in p, a sideband datagram from the address from.
func (s *sideband) handle(p []byte, from netip.AddrPort) {
	if isProbe(p) {
		s.handleProbe(p, from)
		return
	}
	s.deliver(p, from)
}

// deliver hands the STUN answer p from the address from to the Discover
// waiting for it, if any; anything else is dropped.
func (s *sideband) deliver(p []byte, from netip.AddrPort) {
	if s.waiting.Load() == 0 {
		return
	}
	tx, addr, err := stun.ParseResponse(p)
	if err != nil {
		return
	}
	s.mu.Lock()
	d, ok := s.pending[tx]
	s.mu.Unlock()
	if !ok || from != d.server {
		return
	}
	select {
	case d.answer <- addr:
	default:
	}
}

// discover sends STUN Binding requests to server from the WireGuard port,
// again after 500ms, then after twice the wait before (up to 8s), until
// the answer comes, ctx is done or the sideband shuts down.
func (s *sideband) discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	server = unmap(server)
	tx := stun.NewTxID()
	answer := s.expect(tx, server)
	defer s.forget(tx)
	timer := time.NewTimer(initialRTO)
	defer timer.Stop()
	for sent, rto := 1, initialRTO; ; sent, rto = sent+1, min(2*rto, maxRTO) {
		if err := s.sendTo(stun.Request(tx), server); err != nil {
			return netip.AddrPort{}, fmt.Errorf("wg: send STUN request to %v: %w", server, err)
		}
		timer.Reset(rto)
		select {
		case addr := <-answer:
			return addr, nil
		case <-ctx.Done():
			return netip.AddrPort{}, fmt.Errorf("wg: STUN server %v did not answer (%d requests sent): %w", server, sent, ctx.Err())
		case <-s.done:
			return netip.AddrPort{}, fmt.Errorf("wg: engine closed while asking STUN server %v: %w", server, net.ErrClosed)
		case <-timer.C:
		}
	}
}

func (s *sideband) expect(tx stun.TxID, server netip.AddrPort) chan netip.AddrPort {
	d := discovery{server: server, answer: make(chan netip.AddrPort, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[tx] = d
	s.waiting.Store(int32(len(s.pending)))
	return d.answer
}

func (s *sideband) forget(tx stun.TxID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, tx)
	s.waiting.Store(int32(len(s.pending)))
}

// shutdown ends every discovery and probe, for good.
func (s *sideband) shutdown() {
	s.once.Do(func() { close(s.done) })
}
