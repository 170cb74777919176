package wg

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
)

// Crossed handshakes. When both ends of a pair send a handshake
// initiation before either has seen the other's, each consumes the
// other's, which discards its own: the responses that come back answer
// initiations neither end still holds, and no session results until
// WireGuard's retry, 5 s later, and longer if the retries cross too. It
// is common, not a corner: the server tells both ends of a new pair at
// once, and each sends an initiation the moment it configures the peer
// (its persistent keepalive); a path change prompts both ends alike.
//
// So both engines look at the handshakes on their way (the userspace
// engine in its bind, the kernel engine in its relay proxy) and break the
// tie: of two initiations that cross, the one with the lower sender index
// wins. Both ends compare the same two indices, so exactly one end yields,
// and it needs nothing else of the other, not even its key. The end whose
// initiation wins drops the other's, and sends its own again: if the
// first was lost (the other end's NAT had not yet seen a packet to us, or
// the other end did not know us yet) the copy gets through now, since the
// other end's initiation shows that it knows us and that its NAT is open
// to us; if it was not lost, the copy is a replay, which WireGuard drops.
// The end that yields hands the winning initiation on, which answers it,
// but waits answerWait first, for an answer to its own: WireGuard may
// make an initiation while it takes in the peer's (it answers the peer's,
// forgetting its own) and send it only after, so that the other end saw
// no initiation of its own when it handed ours on. Its initiation, which
// it no longer holds, may then win here; the answer to ours, which comes
// with it, says so, and the yielding end drops it instead.

// crossingWindow is how long after sending an initiation an end takes the
// peer's as crossing it: well over a round trip through the relay, well
// under WireGuard's REKEY_TIMEOUT (5 s) between retries.
const crossingWindow = time.Second

// answerWait is how long the end that yields holds the winning initiation
// for an answer to its own that was sent with it.
const answerWait = 20 * time.Millisecond

// WireGuard's handshake messages, as the engines see them.
const (
	msgInitiation    = 1
	msgResponse      = 2
	initiationLength = 148
	responseLength   = 92
	responseMAC1     = 60 // where a response's mac1 is (an initiation's: offMAC1)
)

// meantFor says whether b, a handshake message, carries a mac1 made for
// the public key whose mac1 key is key: it comes from someone who knows
// that key, as the peers do. A stranger spoofing a peer's address knows
// at most its sender index, which travels in the clear; the bind looks
// only at messages meant for its key, so a stranger can neither have our
// initiation sent again nor answer it to turn the tie-break off. (The
// relay proxy needs no such test: the relay says which peer sent each
// packet, having authenticated it.)
func meantFor(b []byte, key *[blake2s.Size]byte) bool {
	switch {
	case isMessage(b, msgInitiation, initiationLength):
		return hasMAC1(b, offMAC1, key)
	case isMessage(b, msgResponse, responseLength):
		return hasMAC1(b, responseMAC1, key)
	}
	return false
}

// verdict is what to do with a handshake message from the peer.
type verdict int

const (
	pass verdict = iota
	drop         // and send WireGuard's own initiation again
	hold         // for answerWait, then hand it on if release says so
)

// crossing is what is known of the last initiation WireGuard sent to one
// peer, and of the peer's that is held. Its methods may be called from
// any goroutine.
type crossing struct {
	mu     sync.Mutex
	sentAt time.Time              // zero once answered
	own    [initiationLength]byte // the initiation
	held   uint32                 // the sender index of the peer's held initiation
	// holding says one is held, until an answer to ours or its release.
	holding bool
}

// sent takes in a packet that WireGuard sends to the peer.
func (c *crossing) sent(b []byte, now time.Time) {
	if !isMessage(b, msgInitiation, initiationLength) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.own[:], b)
	c.sentAt = now
}

// receive takes in a packet from the peer and says what to do with it:
// an initiation that crosses WireGuard's own is dropped if WireGuard's
// wins (and again is WireGuard's, to send the peer again), held if it
// wins. The held one arriving again is the winner's end sending it
// again, having dropped ours: no answer to ours will come, and it passes
// at once. An initiation that passes has WireGuard forget its own, and
// so does this record.
func (c *crossing) receive(b []byte, now time.Time) (v verdict, again []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case isMessage(b, msgResponse, responseLength):
		if !c.sentAt.IsZero() && index(b[8:]) == index(c.own[4:]) {
			c.sentAt, c.holding = time.Time{}, false // answered: the held one is not needed
		}
	case isMessage(b, msgInitiation, initiationLength):
		theirs := index(b[4:])
		switch ours := index(c.own[4:]); {
		case c.holding && theirs == c.held:
			c.holding = false
		case c.sentAt.IsZero() || now.Sub(c.sentAt) >= crossingWindow || ours == theirs:
		case ours < theirs:
			return drop, append([]byte(nil), c.own[:]...)
		default:
			c.held, c.holding = theirs, true
			return hold, nil
		}
		c.sentAt = time.Time{}
	}
	return pass, nil
}

// release says whether the held initiation b goes to WireGuard after
// answerWait: not if an answer to WireGuard's own came meanwhile, or it
// went already.
func (c *crossing) release(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := c.holding && c.held == index(b[4:])
	if ok {
		c.holding = false
		c.sentAt = time.Time{} // WireGuard forgets its own for it
	}
	return ok
}

// index is the little-endian index at the start of b.
func index(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// isHandshake says whether b may be a handshake initiation or response:
// a cheap test for the forwarding paths.
func isHandshake(b []byte) bool {
	return len(b) > 0 && (b[0] == msgInitiation || b[0] == msgResponse)
}

func isMessage(b []byte, typ byte, length int) bool {
	return len(b) == length && b[0] == typ && b[1] == 0 && b[2] == 0 && b[3] == 0
}

// crossings is a crossing per endpoint, for the userspace engine's bind,
// which sees the peers' endpoints and not the peers. An endpoint gets an
// entry with the first initiation to it; the sweeper says when those that
// no longer matter go.
type crossings struct {
	mu    sync.Mutex
	by    map[netip.AddrPort]*crossing
	sweep sweeper
}

// sweeper says when to sweep a map whose entries expire: once it has
// doubled since the last sweep (and holds sweepOver), so that sweeping
// costs each entry the same however many are live, as when a node joins
// a mesh of thousands; and, if it is full, once a crossingWindow.
type sweeper struct {
	at   int
	last time.Time
}

// sweepOver is how many entries a swept map holds before the first sweep.
const sweepOver = 256

// due says whether a map of n entries, full at full, is to be swept now.
func (s *sweeper) due(n, full int, now time.Time) bool {
	return n >= max(s.at, sweepOver) || n >= full && now.Sub(s.last) >= crossingWindow
}

// swept records a sweep that left n entries.
func (s *sweeper) swept(n int, now time.Time) { s.at, s.last = 2*n, now }

// sent is crossing.sent for a packet to to.
func (cs *crossings) sent(b []byte, to netip.AddrPort, now time.Time) {
	if isMessage(b, msgInitiation, initiationLength) {
		cs.entry(to, true, now).sent(b, now)
	}
}

// receive is crossing.receive for a handshake message from from.
func (cs *crossings) receive(b []byte, from netip.AddrPort, now time.Time) (verdict, []byte) {
	if c := cs.entry(from, false, now); c != nil {
		return c.receive(b, now)
	}
	return pass, nil
}

// release is crossing.release for an initiation held from from.
func (cs *crossings) release(b []byte, from netip.AddrPort) bool {
	c := cs.entry(from, false, time.Time{})
	return c != nil && c.release(b)
}

// reset forgets every entry: WireGuard dropped a peer, and what was
// recorded of its handshakes is no longer WireGuard's.
func (cs *crossings) reset() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	clear(cs.by)
}

// entry is ep's entry, made if there is none and create says so (now
// is for the sweep that may come with it).
func (cs *crossings) entry(ep netip.AddrPort, create bool, now time.Time) *crossing {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.by[ep]
	if c != nil || !create {
		return c
	}
	if cs.by == nil {
		cs.by = map[netip.AddrPort]*crossing{}
	}
	if cs.sweep.due(len(cs.by), math.MaxInt, now) { // WireGuard's initiations, one per peer
		for k, old := range cs.by {
			if old.stale(now) {
				delete(cs.by, k)
			}
		}
		cs.sweep.swept(len(cs.by), now)
	}
	c = &crossing{}
	cs.by[ep] = c
	return c
}

// stale says whether c no longer matters: its initiation is answered or
// too old to cross, and it holds none of the peer's.
func (c *crossing) stale(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Sub(c.sentAt) >= crossingWindow && !c.holding
}

// witness sees crossings for the kernel engine on the direct path, where
// the handshakes go straight to kernel WireGuard: it gets a copy of what
// arrives (through the raw port), too late to hold anything back, and sees
// nothing of what WireGuard sends. But a crossing shows in what arrives:
// the peer's initiation, then an answer to our own, which WireGuard
// refuses, having consumed the peer's in between. (An answer that comes
// first completes our handshake, and the peer's initiation after it
// does no harm.) The answer carries our sender index and the initiation
// the peer's: both ends see the same two, so the end whose initiation
// wins by the rule above is the one to make the handshake again, at once
// rather than after WireGuard's retry; the other answers it.
type witness struct {
	mu    sync.Mutex
	by    map[netip.AddrPort]seenInitiation // the last initiation from each endpoint
	sweep sweeper
}

// witnessMax is how many initiations the witness holds: those it cannot
// hold it lets pass, for WireGuard's retry to resolve if they cross.
const witnessMax = 16384

type seenInitiation struct {
	sender uint32
	at     time.Time
}

// saw takes in the handshake message b from from, and says whether it
// completes a crossing that our end is to resolve by initiating again.
func (w *witness) saw(b []byte, from netip.AddrPort, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case isMessage(b, msgInitiation, initiationLength):
		if w.by == nil {
			w.by = map[netip.AddrPort]seenInitiation{}
		}
		if w.sweep.due(len(w.by), witnessMax, now) {
			for ep, s := range w.by {
				if now.Sub(s.at) >= crossingWindow {
					delete(w.by, ep)
				}
			}
			w.sweep.swept(len(w.by), now)
		}
		if _, ok := w.by[from]; ok || len(w.by) < witnessMax {
			w.by[from] = seenInitiation{sender: index(b[4:]), at: now}
		}
	case isMessage(b, msgResponse, responseLength):
		s, ok := w.by[from]
		delete(w.by, from)
		ours := index(b[8:])
		return ok && now.Sub(s.at) < crossingWindow && ours < s.sender
	}
	return false
}
