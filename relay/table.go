package relay

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// noncesPerNode is how many HELLO nonces the replay cache keeps per node. A
// node sends one HELLO every KeepaliveInterval plus a few retransmissions,
// and a nonce stays in the cache for at most 2*Window, so a well-behaved
// node needs about a dozen.
const noncesPerNode = 32

var (
	errReplay  = errors.New("relay: HELLO nonce replayed")
	errFlood   = errors.New("relay: too many HELLOs from one node")
	errTooMany = errors.New("relay: too many nodes")
)

// node is what the relay knows of one VPN IP.
type node struct {
	vpnIP netip.Addr
	addr  netip.AddrPort // where it proved its VPN IP; invalid if unbound
	seen  time.Time      // last valid HELLO or DATA from addr
	pkts  *rate.Limiter
	bytes *rate.Limiter
	// nonces are the recent HELLO nonces, each with the Unix millisecond
	// after which its timestamp is stale anyway.
	nonces [noncesPerNode]struct {
		nonce uint64
		until int64
	}

	packets, sent atomic.Uint64 // forwarded from this node
}

// remember records nonce as used until until, and fails if it already was,
// or if the cache is full of live nonces.
func (n *node) remember(nonce uint64, until, now int64) error {
	free := -1
	for i, s := range n.nonces {
		switch {
		case s.until < now:
			free = i
		case s.nonce == nonce:
			return errReplay
		}
	}
	if free < 0 {
		return errFlood
	}
	n.nonces[free].nonce, n.nonces[free].until = nonce, until
	return nil
}

// live reports whether n holds a nonce that is not yet stale.
func (n *node) live(now int64) bool {
	for _, s := range n.nonces {
		if s.until >= now {
			return true
		}
	}
	return false
}

// table holds the nodes and their bindings. The invariant: addrs[a] == n if
// and only if n.addr == a.
type table struct {
	mu    sync.Mutex
	nodes map[netip.Addr]*node
	addrs map[netip.AddrPort]*node
	max   int
	ttl   time.Duration
	swept time.Time
	opts  Options
}

func newTable(opts Options) *table {
	return &table{
		nodes: make(map[netip.Addr]*node),
		addrs: make(map[netip.AddrPort]*node),
		max:   opts.MaxNodes,
		ttl:   opts.BindingTimeout,
		opts:  opts,
	}
}

// bound reports whether n's binding is current.
func (t *table) bound(n *node, now time.Time) bool {
	return n.addr.IsValid() && now.Sub(n.seen) <= t.ttl
}

// bind binds the VPN IP of the verified HELLO h to from.
func (t *table) bind(h Hello, from netip.AddrPort, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maybeSweep(now)
	n := t.nodes[h.VPNIP]
	if n == nil {
		if len(t.nodes) >= t.max {
			t.sweep(now)
		}
		if len(t.nodes) >= t.max {
			return errTooMany
		}
		n = t.newNode(h.VPNIP)
		t.nodes[h.VPNIP] = n
	}
	if err := n.remember(h.Nonce, h.Time.Add(Window).UnixMilli(), now.UnixMilli()); err != nil {
		return err
	}
	if old := t.addrs[from]; old != nil && old != n {
		old.addr = netip.AddrPort{} // from now belongs to another node
	}
	if n.addr != from {
		delete(t.addrs, n.addr)
	}
	n.addr, n.seen = from, now
	t.addrs[from] = n
	return nil
}

func (t *table) newNode(vpnIP netip.Addr) *node {
	o := t.opts
	return &node{
		vpnIP: vpnIP,
		pkts:  rate.NewLimiter(o.PacketRate, o.PacketBurst),
		bytes: rate.NewLimiter(o.ByteRate, o.ByteBurst),
	}
}

// route finds where DATA of size bytes from the address from to the VPN IP
// dst goes. It returns the sending node and the destination address, or
// the counter to blame (and for a destination bound nowhere, the sending
// node).
func (t *table) route(from netip.AddrPort, dst netip.Addr, size int, now time.Time, s *Server) (*node, netip.AddrPort, *atomic.Uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	src := t.addrs[from]
	if src == nil || !t.bound(src, now) {
		return nil, netip.AddrPort{}, &s.unbound
	}
	src.seen = now
	if !src.pkts.AllowN(now, 1) || !src.bytes.AllowN(now, size) {
		return nil, netip.AddrPort{}, &s.rateLimited
	}
	to := t.nodes[dst]
	if to == nil || !t.bound(to, now) {
		return src, netip.AddrPort{}, &s.noRoute // src may try the mesh
	}
	return src, to.addr, nil
}

// lookup returns where the node with VPN IP dst is bound, if it is.
func (t *table) lookup(dst netip.Addr, now time.Time) (netip.AddrPort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[dst]
	if n == nil || !t.bound(n, now) {
		return netip.AddrPort{}, false
	}
	return n.addr, true
}

// forget drops vpnIP's binding and replay state.
func (t *table) forget(vpnIP netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[vpnIP]; n != nil {
		delete(t.addrs, n.addr)
		delete(t.nodes, vpnIP)
	}
}

// unbindAddr drops the binding to addr (a stream's that closed), if a
// node still has it; the node's replay state stays.
func (t *table) unbindAddr(addr netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.addrs[addr]; n != nil {
		n.addr = netip.AddrPort{}
		delete(t.addrs, addr)
	}
}

// maybeSweep sweeps at most once per half binding timeout, so the cost is
// spread thin.
func (t *table) maybeSweep(now time.Time) {
	if now.Sub(t.swept) >= t.ttl/2 {
		t.sweep(now)
	}
}

// sweep unbinds expired bindings and forgets nodes that are unbound and
// have no live nonce.
func (t *table) sweep(now time.Time) {
	t.swept = now
	ms := now.UnixMilli()
	for ip, n := range t.nodes {
		if n.addr.IsValid() && !t.bound(n, now) {
			delete(t.addrs, n.addr)
			n.addr = netip.AddrPort{}
		}
		if !n.addr.IsValid() && !n.live(ms) {
			delete(t.nodes, ip)
		}
	}
}

// snapshot returns the bound nodes.
func (t *table) snapshot(now time.Time) []NodeStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []NodeStats
	for _, n := range t.nodes {
		if !t.bound(n, now) {
			continue
		}
		out = append(out, NodeStats{
			VPNIP:    n.vpnIP,
			Addr:     n.addr,
			Stream:   isStreamAddr(n.addr),
			LastSeen: n.seen,
			Packets:  n.packets.Load(),
			Bytes:    n.sent.Load(),
		})
	}
	return out
}
