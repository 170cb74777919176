package filter

import (
	"sync"
	"time"
)

// How long a flow lives without a packet. A TCP connection outlives
// Linux's default keepalive interval (2 hours), so an idle SSH session with
// keepalives on is never forgotten; once a FIN or RST is seen it has
// TCPClosingTimeout left. UDP flows get Linux's stream timeout, and an
// echo (ping) what a slow reply needs.
const (
	TCPTimeout        = 4 * time.Hour
	TCPClosingTimeout = 2 * time.Minute
	UDPTimeout        = 2 * time.Minute
	ICMPTimeout       = 30 * time.Second
)

// MaxFlows bounds the connection table. When it is full, a new flow
// replaces one of the few it samples, the one that expires first.
const MaxFlows = 65536

const (
	numShards   = 16
	shardFlows  = MaxFlows / numShards
	evictSample = 8
	// refreshEvery is how stale a flow's expiry may get before a packet
	// takes the write lock to push it back: packets of a known flow
	// otherwise take only a read lock.
	refreshEvery = int64(time.Second)
)

// flowKey names a flow as this node sees it: its own address and port
// (or echo identifier), the peer's, and the protocol.
type flowKey struct {
	local, remote [4]byte
	lport, rport  uint16
	proto         uint32 // not a byte, so the key has no padding
}

// opener says which side opened a flow.
type opener uint8

const (
	// thisNode opened the flow: the peer's packets in it are replies, and
	// pass.
	thisNode opener = iota + 1
	// peer opened the flow (UDP only): its packets are checked against
	// the rules every time, and this node's answers do not make the flow
	// this node's.
	peer
)

type flow struct {
	expires int64 // nanoseconds, on the conntrack's clock
	opener  opener
	closing bool // a TCP FIN or RST was seen
}

// conntrack is the table of flows, in shards that each have their own
// lock.
type conntrack struct {
	shards [numShards]shard
	// clock tells the time in nanoseconds. It is read only when a flow
	// is found or added: reading it costs as much as a map lookup.
	clock func() int64
}

type shard struct {
	mu    sync.RWMutex
	flows map[flowKey]flow
	_     [32]byte // a shard per cache line
}

func (c *conntrack) shard(k flowKey) *shard {
	h := uint32(k.lport)<<16 | uint32(k.rport)
	h ^= uint32(k.remote[3]) | uint32(k.remote[2])<<8
	h *= 0x9e3779b1
	return &c.shards[h>>28]
}

// timeout is how long a flow of proto lives after a packet.
func timeout(proto uint32, closing bool) int64 {
	switch {
	case proto == uint32(protoUDP):
		return int64(UDPTimeout)
	case proto == uint32(protoICMP):
		return int64(ICMPTimeout)
	case closing:
		return int64(TCPClosingTimeout)
	}
	return int64(TCPTimeout)
}

// touch returns who opened the live flow k, and pushes back its expiry
// (shortened if closing); false if there is no such flow.
func (c *conntrack) touch(k flowKey, closing bool) (opener, bool) {
	f, now, ok := c.find(k)
	if !ok {
		return 0, false
	}
	closing = closing || f.closing
	if closing != f.closing || f.expires-now < timeout(k.proto, closing)-refreshEvery {
		c.shard(k).refresh(k, now, closing)
	}
	return f.opener, true
}

// find returns the live flow k, leaving it as it is, and the time.
func (c *conntrack) find(k flowKey) (flow, int64, bool) {
	s := c.shard(k)
	s.mu.RLock()
	f, ok := s.flows[k]
	s.mu.RUnlock()
	if !ok {
		return f, 0, false
	}
	now := c.clock()
	return f, now, f.expires > now
}

func (s *shard) refresh(k flowKey, now int64, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.flows[k]; ok && f.expires > now {
		f.closing = closing || f.closing
		f.expires = now + timeout(k.proto, f.closing)
		s.flows[k] = f
	}
}

// add records the flow k, opened by o. A full shard first makes room.
func (c *conntrack) add(k flowKey, o opener) {
	now := c.clock()
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flows == nil {
		s.flows = make(map[flowKey]flow)
	}
	if _, ok := s.flows[k]; !ok && len(s.flows) >= shardFlows {
		s.evict(now)
	}
	s.flows[k] = flow{expires: now + timeout(k.proto, false), opener: o}
}

// evict removes the expired flows among a few it samples (the map's
// iteration starts at random), or if none has expired, the sampled flow
// that expires first.
func (s *shard) evict(now int64) {
	var victim flowKey
	var first int64
	found, expired, n := false, false, 0
	for k, f := range s.flows {
		switch {
		case f.expires <= now:
			delete(s.flows, k)
			expired = true
		case !found || f.expires < first:
			victim, first, found = k, f.expires, true
		}
		if n++; n == evictSample {
			break
		}
	}
	if !expired && found {
		delete(s.flows, victim)
	}
}

// len counts the flows held, live or expired.
func (c *conntrack) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.flows)
		s.mu.RUnlock()
	}
	return n
}

// clear forgets every flow.
func (c *conntrack) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.flows = nil
		s.mu.Unlock()
	}
}
