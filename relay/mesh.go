package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Relays of one mesh (the relays of replicas of its coordination server)
// forward to each other the DATA whose destination is bound to another:
// a pair of nodes talking to different replicas still meets. Between
// relays a DATA travels as FORWARD, authenticated with a key all of them
// derive from the coordination server's private key:
//
//	FORWARD  header | srcVPN(4) | dstVPN(4) | unixMillis(8) | mac(16) | payload   relay → relay
//
// The mac is HMAC-SHA256(meshKey, header|srcVPN|dstVPN|unixMillis|payload)
// cut to 16 bytes. A relay accepts a FORWARD only from the address of a
// relay of its mesh, and only within Window of its clock, so that a copy
// replayed later, or from elsewhere, cannot redirect a node's traffic.
// A relay sends FORWARD only for DATA from a node bound to itself,
// and delivers a FORWARD only to a node bound to itself, never on, so a
// datagram crosses at most one pair of relays. It sends a FORWARD to the
// relay it last had one from for that destination (within meshRouteTTL),
// or else to every relay of the mesh.

const (
	typeForward = 5
	// forwardOverhead is what a FORWARD adds to a payload: 28 bytes more
	// than DATA.
	forwardOverhead = forwardSigned + macLen
	forwardSigned   = headerLen + 4 + 4 + 8 // the header the mac covers
	meshRouteTTL    = 30 * time.Second
)

// mesh is a relay's view of the other relays of its mesh. Serve's
// goroutine and the streams' use it at once: mu guards the rest but peers,
// which SetMesh replaces.
type mesh struct {
	peers  atomic.Pointer[[]netip.AddrPort]
	key    []byte
	mu     sync.Mutex
	mac    hash.Hash
	routes map[netip.Addr]meshRoute // where a VPN IP was last heard from
	sum    [sha256.Size]byte
}

type meshRoute struct {
	relay netip.AddrPort
	at    time.Time
}

func newMesh(key []byte) *mesh {
	m := &mesh{key: key, mac: hmac.New(sha256.New, key), routes: make(map[netip.Addr]meshRoute)}
	m.peers.Store(new([]netip.AddrPort))
	return m
}

// seal stamps the FORWARD b with the time and fills in its mac.
func (m *mesh) seal(b []byte, now time.Time) {
	binary.BigEndian.PutUint64(b[12:forwardSigned], uint64(now.UnixMilli()))
	mac := m.sign(b)
	copy(b[forwardSigned:forwardOverhead], mac[:])
}

func (m *mesh) sign(b []byte) [macLen]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mac.Reset()
	m.mac.Write(b[:forwardSigned])
	m.mac.Write(b[forwardOverhead:])
	return [macLen]byte(m.mac.Sum(m.sum[:0]))
}

// open checks the FORWARD b from the address from, and returns its
// addresses.
func (m *mesh) open(b []byte, from netip.AddrPort, now time.Time) (src, dst netip.Addr, err error) {
	if err := expect(b, typeForward, forwardOverhead, true); err != nil {
		return src, dst, err
	}
	if !slices.Contains(*m.peers.Load(), unmap(from)) {
		return src, dst, fmt.Errorf("relay: FORWARD from %v, which is not a relay of this mesh", from)
	}
	if mac := m.sign(b); !hmac.Equal(mac[:], b[forwardSigned:forwardOverhead]) {
		return src, dst, fmt.Errorf("%w: FORWARD", ErrBadMAC)
	}
	sent := time.UnixMilli(int64(binary.BigEndian.Uint64(b[12:forwardSigned])))
	if d := now.Sub(sent); d > Window || d < -Window {
		return src, dst, fmt.Errorf("%w: FORWARD %v from %v", ErrStale, d.Round(time.Millisecond), from)
	}
	return netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4([4]byte(b[8:12])), nil
}

// targets are the relays a FORWARD for dst goes to.
func (m *mesh) targets(dst netip.Addr, now time.Time) []netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[dst]; ok && now.Sub(r.at) <= meshRouteTTL {
		return []netip.AddrPort{r.relay}
	}
	return *m.peers.Load()
}

// learn records that src is bound to the relay at from.
func (m *mesh) learn(src netip.Addr, from netip.AddrPort, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.routes) > 4*DefaultMaxNodes { // forget old news rather than grow
		clear(m.routes)
	}
	m.routes[src] = meshRoute{from, now}
}

// SetMesh makes the relays at peers (the other relays of this relay's
// mesh, not itself) the ones DATA to nodes not bound here is forwarded to.
// It is safe to call while Serve runs. Without a key (Options.MeshKey) it
// does nothing.
func (s *Server) SetMesh(peers []netip.AddrPort) {
	if s.mesh == nil {
		return
	}
	p := make([]netip.AddrPort, len(peers))
	for i, a := range peers {
		p[i] = unmap(a) // as datagrams' sources are seen
	}
	s.mesh.peers.Store(&p)
}

// MeshPeers are the mesh's other relays, as SetMesh gave them.
func (s *Server) MeshPeers() []netip.AddrPort {
	if s.mesh == nil {
		return nil
	}
	if p := s.mesh.peers.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// toMesh sends the DATA b, from the bound node src to the VPN IP dst that
// is bound to no node here, to the mesh's other relays as FORWARD. b is
// rewritten in place when its buffer has room, as read buffers do.
func (s *Server) toMesh(b []byte, src *node, dst netip.Addr, now time.Time, out *outbox) bool {
	m := s.mesh
	if m == nil {
		return false
	}
	to := m.targets(dst, now)
	if len(to) == 0 {
		return false
	}
	payload := len(b) - DataOverhead
	var f []byte
	if cap(b) >= forwardOverhead+payload {
		f = b[:forwardOverhead+payload]
		copy(f[forwardOverhead:], b[DataOverhead:DataOverhead+payload]) // memmove: the regions overlap
	} else {
		f = make([]byte, forwardOverhead+payload)
		copy(f[forwardOverhead:], b[DataOverhead:])
	}
	f[3] = typeForward
	*(*[4]byte)(f[4:8]) = src.vpnIP.As4()
	*(*[4]byte)(f[8:12]) = dst.As4()
	m.seal(f, now)
	for _, relay := range to {
		s.meshSent.Add(1)
		s.send(out, f, relay, src, false)
	}
	return true
}

// fromMesh delivers a FORWARD from another relay of the mesh to the node
// bound here that it is for, as DATA from its source.
func (s *Server) fromMesh(b []byte, from netip.AddrPort, now time.Time, out *outbox) {
	m := s.mesh
	if m == nil {
		s.drop(&s.malformed, "FORWARD, and this relay is in no mesh", from)
		return
	}
	src, dst, err := m.open(b, from, now)
	if err != nil {
		s.drop(&s.meshBad, err, from)
		return
	}
	m.learn(src, from, now)
	to, ok := s.table.lookup(dst, now)
	if !ok {
		s.drop(&s.meshMissed, "FORWARD to a VPN IP not bound here", from)
		return
	}
	d := b[:DataOverhead+len(b)-forwardOverhead]
	copy(d[DataOverhead:], b[forwardOverhead:])
	d[3] = typeData
	*(*[4]byte)(d[4:8]) = src.As4()
	s.meshReceived.Add(1)
	s.send(out, d, to, nil, false)
}
