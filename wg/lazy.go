package wg

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Idle peers. wireguard-go spends on every peer it holds, traffic or not:
// queues, timers and goroutines (about 80 KB a peer), and with a
// persistent keepalive a handshake every 5 s for 90 s while the peer is
// silent, or a keepalive every 25 s and a new session every 2 minutes
// while it answers. A node of a 10,000-node mesh talks to a few of its
// peers. So the userspace engine gives wireguard-go only the peers that
// have traffic, as Tailscale trims idle peers: a peer is woken (given to
// wireguard-go) when a packet for it leaves the TUN device or its
// handshake initiation arrives, and is put to sleep again after idleAfter
// without a packet through the TUN device either way (keepalives and
// handshakes do not count). The others wait here, configured but asleep.
// Paths are the daemon's business and unaffected: it probes asleep peers
// as any other, from the same port.
//
// A mesh of up to eagerUpTo peers is not worth it: there every peer stays
// awake, as if the engine held nothing back, so that tunnels are ready
// before the first packet and the peers' handshakes and keepalives keep
// their NATs open. Peers beyond it start asleep, and the idle ones are
// put to sleep; a mesh that shrinks back wakes them all.
//
// A woken peer starts with a handshake, so the first packet to a peer
// that slept waits one round trip more. The kernel engine has no TUN
// device of wire's to watch and keeps every peer configured.

// idleAfter is how long a peer may go without traffic before it sleeps.
var idleAfter = 5 * time.Minute // a variable for tests

// eagerUpTo is the most peers a mesh may have for all of them to stay
// awake.
var eagerUpTo = 64 // a variable for tests

// sleepEvery is how often the engine looks for idle peers.
var sleepEvery = 30 * time.Second // a variable for tests

// lazyPeers holds the peers the engine was given, and gives wireguard-go
// (device) the awake ones. It sits between the engine's state, which
// thinks every peer applied, and the device.
//
// Two locks: dev orders the changes sent to the device (a config change,
// a wake, a sleep) and is held while one is sent; mu guards the maps only
// for a moment, and is all the packet paths take. The packet paths must
// never wait for the device: removing a peer from wireguard-go waits for
// its receive goroutine, which may be writing to the TUN device.
type lazyPeers struct {
	device func(wgtypes.Config) error   // wireguard-go's IPC
	live   func() ([]PeerStatus, error) // the peers wireguard-go holds
	now    func() time.Time
	dev    sync.Mutex
	asleep atomic.Int32 // peers held back: initiations are looked at only while some are
	// watching says the mesh is past eagerUpTo, so packets are noted; in
	// a smaller one every peer stays awake and the packet paths do nothing.
	watching atomic.Bool

	closing   chan struct{} // closed when the engine closes (see await)
	closeOnce sync.Once

	mu    sync.RWMutex
	byKey map[Key]*lazyPeer
	byIP  map[netip.Addr]*lazyPeer // by the address of a /32 or /128 allowed IP
	self  *responder               // nil until a private key is set
}

// lazyPeer is one peer as the engine was given it.
type lazyPeer struct {
	cfg   wgtypes.PeerConfig // all of it: allowed IPs, keepalive, endpoint if any
	ips   []netip.Addr       // its single-address allowed IPs, the keys of byIP
	awake atomic.Bool        // wireguard-go has it (or may: after a failed change)
	// bare says it was woken by its initiation, without the persistent
	// keepalive, which it gets with the first packet it is sent.
	bare atomic.Bool
	// waking is the done channel of the wake under way, if any (see await).
	waking atomic.Pointer[chan struct{}]
	last   atomic.Int64 // unix nanoseconds of its last packet through the TUN, or of its waking
}

func newLazyPeers(device func(wgtypes.Config) error, live func() ([]PeerStatus, error)) *lazyPeers {
	return &lazyPeers{device: device, live: live, now: time.Now, closing: make(chan struct{}),
		byKey: map[Key]*lazyPeer{}, byIP: map[netip.Addr]*lazyPeer{}}
}

// apply is the engine state's apply: it records every peer of d and sends
// the device the part about awake peers, with the key and port.
func (l *lazyPeers) apply(d wgtypes.Config) error {
	l.dev.Lock()
	defer l.dev.Unlock()
	out := wgtypes.Config{PrivateKey: d.PrivateKey, ListenPort: d.ListenPort, FirewallMark: d.FirewallMark}
	l.mu.Lock()
	if d.PrivateKey != nil {
		l.self = newResponder(*d.PrivateKey)
	}
	for _, pc := range d.Peers {
		p := l.byKey[pc.PublicKey]
		if pc.Remove {
			if p != nil {
				l.forget(p)
				if p.awake.Load() {
					out.Peers = append(out.Peers, pc)
				}
			}
			continue
		}
		if p == nil {
			p = &lazyPeer{}
			l.byKey[pc.PublicKey] = p
			if len(l.byKey) <= eagerUpTo {
				p.awake.Store(true) // a small mesh: sent to the device below
				p.last.Store(l.now().UnixNano())
			} else {
				l.asleep.Add(1)
			}
		}
		l.record(p, pc)
		if p.awake.Load() {
			out.Peers = append(out.Peers, pc)
			p.bare.Store(false) // pc has the keepalive
		}
	}
	l.watch(len(l.byKey) > eagerUpTo)
	l.mu.Unlock()
	if isEmpty(out) {
		return nil
	}
	return l.device(out)
}

// record makes pc the settings of p, keeping its endpoint if pc has none.
// Callers hold l.mu.
func (l *lazyPeers) record(p *lazyPeer, pc wgtypes.PeerConfig) {
	for _, ip := range p.ips {
		delete(l.byIP, ip)
	}
	if pc.Endpoint == nil {
		pc.Endpoint = p.cfg.Endpoint
	}
	p.cfg, p.ips = pc, p.ips[:0]
	for _, n := range pc.AllowedIPs {
		ones, bits := n.Mask.Size()
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ones == bits {
			ip = ip.Unmap()
			l.byIP[ip] = p
			p.ips = append(p.ips, ip)
		}
	}
}

// forget drops p. Callers hold l.mu.
func (l *lazyPeers) forget(p *lazyPeer) {
	for _, ip := range p.ips {
		if l.byIP[ip] == p {
			delete(l.byIP, ip)
		}
	}
	delete(l.byKey, p.cfg.PublicKey)
	if !p.awake.Load() {
		l.asleep.Add(-1)
	}
}

// wake gives p to the device, if it is asleep and still wanted. A failed
// wake counts as awake: the device may hold the peer, so later changes
// and its removal are sent there, and it sleeps again when idle.
//
// A peer woken by its own initiation (bare) comes without its persistent
// keepalive: wireguard-go starts a handshake at once for a new peer with
// one, and that handshake would cross the peer's (each side answers the
// other's initiation and forgets its own), costing both a 5 s retry.
func (l *lazyPeers) wake(p *lazyPeer, bare bool) {
	l.dev.Lock()
	defer l.dev.Unlock()
	l.mu.RLock()
	wanted := l.byKey[p.cfg.PublicKey] == p
	pc := p.cfg
	l.mu.RUnlock()
	if !wanted || p.awake.Load() {
		return
	}
	if bare {
		var none time.Duration
		pc.PersistentKeepaliveInterval = &none
	}
	p.bare.Store(bare)
	p.last.Store(l.now().UnixNano())
	p.awake.Store(true)
	l.asleep.Add(-1)
	l.device(wgtypes.Config{Peers: []wgtypes.PeerConfig{pc}})
}

// watch starts or stops noting packets. Peers awake when it starts were
// not watched, so their idle time starts now. Callers hold l.mu.
func (l *lazyPeers) watch(on bool) {
	if on == l.watching.Load() {
		return
	}
	if on {
		now := l.now().UnixNano()
		for _, p := range l.byKey {
			p.last.Store(now)
		}
	}
	l.watching.Store(on)
}

// wakeAll gives the device every asleep peer. Callers hold l.dev.
func (l *lazyPeers) wakeAll() {
	if l.asleep.Load() == 0 {
		return
	}
	var out wgtypes.Config
	var woken []*lazyPeer
	l.mu.RLock()
	for _, p := range l.byKey {
		if !p.awake.Load() {
			out.Peers = append(out.Peers, p.cfg)
			woken = append(woken, p)
		}
	}
	l.mu.RUnlock()
	now := l.now().UnixNano()
	for _, p := range woken {
		p.last.Store(now)
		p.bare.Store(false)
		p.awake.Store(true)
	}
	l.asleep.Add(-int32(len(woken)))
	l.device(out) // a failure leaves them awake: see wake
}

// dress gives a bare peer its persistent keepalive; the caller took bare
// off it.
func (l *lazyPeers) dress(p *lazyPeer) {
	l.dev.Lock()
	defer l.dev.Unlock()
	if !p.awake.Load() {
		return
	}
	keepalive := Keepalive
	l.device(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: p.cfg.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &keepalive}}})
}

// sleep takes the peers idle since before idleAfter out of the device,
// and says how many went. A peer given no endpoint keeps the one it
// roamed to, to send its next handshake there. In a mesh small enough
// (eagerUpTo), it wakes the asleep peers instead.
func (l *lazyPeers) sleep() int {
	l.dev.Lock()
	defer l.dev.Unlock()
	if !l.watching.Load() {
		l.wakeAll()
		return 0
	}
	idle := l.now().Add(-idleAfter).UnixNano()
	var out wgtypes.Config
	var going []*lazyPeer
	roamed := false
	l.mu.RLock()
	for k, p := range l.byKey {
		if p.awake.Load() && p.last.Load() < idle {
			out.Peers = append(out.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
			going = append(going, p)
			roamed = roamed || p.cfg.Endpoint == nil
		}
	}
	l.mu.RUnlock()
	if len(going) == 0 {
		return 0
	}
	var live []PeerStatus
	if roamed {
		live, _ = l.live()
	}
	if l.device(out) != nil {
		return 0
	}
	l.mu.Lock()
	for _, s := range live {
		if p := l.byKey[s.PublicKey]; p != nil && p.cfg.Endpoint == nil && s.Endpoint.IsValid() {
			p.cfg.Endpoint = net.UDPAddrFromAddrPort(s.Endpoint)
		}
	}
	l.mu.Unlock()
	for _, p := range going {
		p.awake.Store(false)
	}
	l.asleep.Add(int32(len(going)))
	return len(going)
}

// sleeping is the settings of the asleep peers, by key, for Peers.
func (l *lazyPeers) sleeping() map[Key]wgtypes.PeerConfig {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make(map[Key]wgtypes.PeerConfig, l.asleep.Load())
	for k, p := range l.byKey {
		if !p.awake.Load() {
			out[k] = p.cfg
		}
	}
	return out
}

// isAsleep says whether k is a peer, asleep.
func (l *lazyPeers) isAsleep(k Key) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p := l.byKey[k]
	return p != nil && !p.awake.Load()
}

// peerFor is the peer whose allowed IP is ip, if any.
func (l *lazyPeers) peerFor(ip netip.Addr) *lazyPeer {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.byIP[ip]
}

// sent notes packets leaving the TUN device for the mesh, waking the peers
// they are for: it returns once the device has them (or after wakeWait,
// see await), so that wireguard-go finds the peer for the packet that
// woke it.
func (l *lazyPeers) sent(pkts [][]byte, sizes []int, offset, n int) {
	l.note(pkts, sizes, offset, n, dstAddr, true)
}

// received notes packets from the mesh written to the TUN device.
func (l *lazyPeers) received(pkts [][]byte, offset int) {
	l.note(pkts, nil, offset, len(pkts), srcAddr, false)
}

func (l *lazyPeers) note(pkts [][]byte, sizes []int, offset, n int, addr func([]byte) netip.Addr, wake bool) {
	if !l.watching.Load() {
		return
	}
	now := l.now().UnixNano()
	var last netip.Addr
	for i := range n {
		p := pkts[i][offset:]
		if sizes != nil {
			p = p[:sizes[i]]
		}
		ip := addr(p)
		if !ip.IsValid() || ip == last { // a batch is mostly one flow
			continue
		}
		last = ip
		peer := l.peerFor(ip)
		if peer == nil {
			continue
		}
		peer.last.Store(now)
		switch {
		case !wake:
		case !peer.awake.Load():
			l.await(peer, false)
		case peer.bare.CompareAndSwap(true, false):
			go l.dress(peer) // the packet does not need it
		}
	}
}

// initiation wakes the asleep peer that sent the handshake initiation
// msg, before wireguard-go reads it. It costs nothing while every peer is
// awake.
func (l *lazyPeers) initiation(msg []byte) {
	if l.asleep.Load() == 0 || !isInitiation(msg) {
		return
	}
	l.mu.RLock()
	self := l.self
	l.mu.RUnlock()
	if self == nil {
		return
	}
	key, ok := self.initiator(msg)
	if !ok {
		return
	}
	l.mu.RLock()
	p := l.byKey[key]
	l.mu.RUnlock()
	if p != nil && !p.awake.Load() {
		l.await(p, true)
	}
}

// wakeWait is the longest a packet waits for its peer to be woken. A wake
// takes microseconds; but the packet paths are wireguard-go's receive and
// TUN goroutines, and wireguard-go waits for those, holding its IPC lock,
// when it moves its port or closes. So the device is called from another
// goroutine, and the packet waits for it only this long, or until the
// engine closes; if it gives up, wireguard-go drops the packet (it has no
// peer for it yet) and the peer is woken all the same.
const wakeWait = 250 * time.Millisecond

// await wakes p (see wake) and waits for it, for at most wakeWait or
// until the engine closes. Concurrent calls for one peer share one wake.
func (l *lazyPeers) await(p *lazyPeer, bare bool) {
	done := make(chan struct{})
	if !p.waking.CompareAndSwap(nil, &done) {
		w := p.waking.Load()
		if w == nil {
			return // the wake under way just ended
		}
		done = *w
	} else {
		go func() {
			l.wake(p, bare)
			p.waking.Store(nil)
			close(done)
		}()
	}
	timer := time.NewTimer(wakeWait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	case <-l.closing:
	}
}

// close makes packets stop waiting for wakes, before the device closes.
func (l *lazyPeers) close() { l.closeOnce.Do(func() { close(l.closing) }) }

// dstAddr and srcAddr are an IP packet's destination and source, or the
// zero Addr if p is not one.
func dstAddr(p []byte) netip.Addr { return ipAt(p, 16, 24) }
func srcAddr(p []byte) netip.Addr { return ipAt(p, 12, 8) }

func ipAt(p []byte, off4, off6 int) netip.Addr {
	if len(p) == 0 {
		return netip.Addr{}
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) >= 20 {
			return netip.AddrFrom4([4]byte(p[off4 : off4+4]))
		}
	case 6:
		if len(p) >= 40 {
			return netip.AddrFrom16([16]byte(p[off6 : off6+16]))
		}
	}
	return netip.Addr{}
}

// every runs f every period until stop is called, which waits for a run
// of f under way to end.
func every(period time.Duration, f func()) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				f()
			case <-done:
				return
			}
		}
	}()
	return sync.OnceFunc(func() { close(done); <-ended })
}
