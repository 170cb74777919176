package wg

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Direct-path probes: a node checks that it can reach a peer's endpoint
// directly, and opens its own NAT towards it, by sending a ping from its
// WireGuard port; the peer's bind answers with a pong from its own. Both
// are 12 bytes ('w' 'p' version type | nonce), so answering is never an
// amplification. 'w' (0x77) can be neither a WireGuard message type (1-4)
// nor the first byte of STUN (whose top two bits are zero).
const (
	probeLen     = 12
	probeVersion = 1
	probePing    = 1
	probePong    = 2
)

func appendProbe(dst []byte, typ byte, nonce uint64) []byte {
	dst = append(dst, 'w', 'p', probeVersion, typ)
	return binary.BigEndian.AppendUint64(dst, nonce)
}

func isProbe(b []byte) bool {
	return len(b) == probeLen && b[0] == 'w' && b[1] == 'p' && b[2] == probeVersion
}

// handleProbe answers a ping, or hands a pong to the Probe waiting for it.
func (s *sideband) handleProbe(p []byte, from netip.AddrPort) {
	nonce := binary.BigEndian.Uint64(p[4:])
	switch p[3] {
	case probePing:
		s.sendTo(appendProbe(make([]byte, 0, probeLen), probePong, nonce), from)
	case probePong:
		s.mu.Lock()
		w, ok := s.probes[nonce]
		s.mu.Unlock()
		if ok && from == w.to {
			select {
			case w.answer <- struct{}{}:
			default:
			}
		}
	}
}

// probeWait is a Probe waiting for its pong.
type probeWait struct {
	to     netip.AddrPort
	answer chan struct{}
}

// probe pings to from the WireGuard port, again after 300 ms, and returns
// the round-trip time of the first pong.
func (s *sideband) probe(ctx context.Context, to netip.AddrPort) (time.Duration, error) {
	to = unmap(to)
	var nb [8]byte
	rand.Read(nb[:])
	nonce := binary.BigEndian.Uint64(nb[:])
	w := probeWait{to: to, answer: make(chan struct{}, 1)}
	s.mu.Lock()
	s.probes[nonce] = w
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.probes, nonce)
		s.mu.Unlock()
	}()
	ping := appendProbe(make([]byte, 0, probeLen), probePing, nonce)
	start := time.Now()
	retry := time.NewTimer(300 * time.Millisecond)
	defer retry.Stop()
	for {
		if err := s.sendTo(ping, to); err != nil {
			return 0, err
		}
		select {
		case <-w.answer:
			return time.Since(start), nil
		case <-ctx.Done():
			return 0, fmt.Errorf("wg: no answer from %v: %w", to, ctx.Err())
		case <-s.done:
			return 0, net.ErrClosed
		case <-retry.C:
		}
	}
}
