package wg

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"
)

// Crossed handshakes. When both ends of a pair send a handshake
// initiation before either has seen the other's, each consumes the
// other's, which discards its own: the responses that come back answer
// initiations neither end still holds, and no session results. WireGuard
// relies on the jitter of its retries to come apart, but two ends that
// are prompted at once (a ping each way, both nudged by a change of path)
// can cross again and again over a slow path such as the relay. The
// kernel engine's proxy breaks the tie: of the two, the end with the
// lower VPN address drops the other's initiation while its own is
// unanswered, so the other end answers it and the handshake completes.

// crossingWindow is how long after sending an initiation the end that
// keeps its own drops the peer's: well over a one-way trip through the
// relay, well under WireGuard's REKEY_TIMEOUT (5 s) between retries.
const crossingWindow = time.Second

// WireGuard's handshake messages, as the proxy sees them.
const (
	msgInitiation    = 1
	msgResponse      = 2
	initiationLength = 148
	responseLength   = 92
)

// crossing is what the proxy knows of the last initiation WireGuard sent
// to one peer. Its methods may be called from any goroutine.
type crossing struct {
	sentAt atomic.Int64  // unix nanoseconds; 0 once answered
	index  atomic.Uint32 // its sender index
}

// sent takes in a packet that WireGuard sends to the peer.
func (c *crossing) sent(b []byte, now time.Time) {
	if isMessage(b, msgInitiation, initiationLength) {
		c.index.Store(binary.LittleEndian.Uint32(b[4:8]))
		c.sentAt.Store(now.UnixNano())
	}
}

// pass takes in a packet from the peer, and says whether WireGuard should
// have it: not if it is an initiation that crosses WireGuard's own while
// keep says this end's initiation is the one to keep.
func (c *crossing) pass(b []byte, keep bool, now time.Time) bool {
	switch {
	case isMessage(b, msgResponse, responseLength):
		if binary.LittleEndian.Uint32(b[8:12]) == c.index.Load() {
			c.sentAt.Store(0) // answered
		}
	case isMessage(b, msgInitiation, initiationLength):
		at := c.sentAt.Load()
		return !keep || at == 0 || now.Sub(time.Unix(0, at)) >= crossingWindow
	}
	return true
}

// keepsOwn says whether self's initiation wins over peer's when they
// cross: the lower VPN address's does, so that exactly one end yields.
func keepsOwn(self, peer netip.Addr) bool {
	return self.IsValid() && self.Unmap().Less(peer.Unmap())
}

// isHandshake says whether b may be a handshake initiation or response:
// a cheap test for the forwarding paths.
func isHandshake(b []byte) bool {
	return len(b) > 0 && (b[0] == msgInitiation || b[0] == msgResponse)
}

func isMessage(b []byte, typ byte, length int) bool {
	return len(b) == length && b[0] == typ && b[1] == 0 && b[2] == 0 && b[3] == 0
}
