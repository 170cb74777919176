package wg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/stun"
)

// wgClient is the part of wgctrl.Client the kernel engine uses.
type wgClient interface {
	ConfigureDevice(name string, cfg wgtypes.Config) error
	Device(name string) (*wgtypes.Device, error)
	Close() error
}

// kernel is Linux's own WireGuard: a netlink link of type wireguard,
// configured through wgctrl.
type kernel struct {
	name   string
	client wgClient
	fw     firewall // enforces Config.Filter
	ns     namespace
	log    *slog.Logger

	mu     sync.Mutex
	port   int  // the listen port, given to WireGuard by the first Set
	bound  bool // WireGuard holds port: only raw sockets can use it now
	up     bool // the link is up
	state  state
	closed bool

	// raw carries STUN and probes on the port once WireGuard holds it;
	// nil, with rawErr saying why, where raw sockets cannot be opened.
	raw    *rawPort
	rawErr error

	// proxy takes relayed peers' packets between WireGuard and the relay
	// connection; listening is the port WireGuard has been given (zero
	// before the first Set), for the proxy to send to.
	proxy     *relayProxy
	listening atomic.Int32

	// witness sees crossed handshakes on the direct path in what the raw
	// port takes in, of the messages meant for the key whose mac1 key is
	// mac1 (see meantFor).
	witness witness
	mac1    atomic.Pointer[[blake2s.Size]byte]
	// initiated is when the engine last had WireGuard initiate again to
	// each peer that WireGuard still has (under mu).
	initiated map[Key]time.Time
	// crossed holds the endpoints of the crossings not yet resolved, with
	// when each was seen; armed says an initiateAgain is due.
	crossedMu sync.Mutex
	crossed   map[netip.AddrPort]time.Time
	armed     bool
	// now and after are the clock and timers that crossings are
	// resolved by: time.Now and time.AfterFunc, but for tests.
	now   func() time.Time
	after func(time.Duration, func())
}

var _ Engine = (*kernel)(nil)

// newKernel creates a wireguard link in the current namespace;
// errNoKernel if the kernel has none.
func newKernel(opts Options) (*kernel, error) {
	ns, err := currentNamespace()
	if err != nil {
		return nil, err
	}
	l, err := openLink(opts.Name, ns)
	if err != nil {
		ns.close()
		return nil, err
	}
	err = l.addWireGuard(opts.MTU)
	if errors.Is(err, errLinkExists) && leftBehind(opts) {
		// Kernel links outlive their process: this node's own, from a run
		// that did not stop cleanly (SIGKILL, a crash). Start afresh.
		opts.Logger.Info("replacing the interface a run of this node left behind", "interface", opts.Name)
		if err = l.remove(); err == nil {
			if l, err = openLink(opts.Name, ns); err == nil {
				err = l.addWireGuard(opts.MTU)
			}
		}
	}
	if err != nil {
		if l != nil {
			l.c.Close() // the link, if any, is not ours
		}
		ns.close()
		return nil, err
	}
	client, err := wgctrl.New()
	if err != nil {
		l.remove()
		ns.close()
		return nil, fmt.Errorf("wg: open wgctrl for %s: %w", opts.Name, err)
	}
	fw := &nftFirewall{iface: opts.Name, ns: ns, log: opts.Logger.With("interface", opts.Name)}
	return startKernel(l, client, fw, ns, opts)
}

// startKernel makes the engine of the link that nif stands for, which
// client configures and fw filters, and picks its listen port. The link
// stays down until the first Set, so that WireGuard binds no port before
// it is told which; that Set also applies the filter, or removes one a
// crashed run left. startKernel owns what it is given: on failure
// everything is closed.
func startKernel(nif netif, client wgClient, fw firewall, ns namespace, opts Options) (*kernel, error) {
	e := &kernel{
		name:   opts.Name,
		client: client,
		fw:     fw,
		ns:     ns,
		log:    opts.Logger.With("interface", opts.Name),
		port:   opts.ListenPort,
		now:    time.Now,
		after:  func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	e.state = state{apply: e.apply, netif: nif, enforce: fw.set}
	e.proxy = newRelayProxy(func() int { return int(e.listening.Load()) }, e.listenProxy)
	if e.port == 0 {
		var err error
		if e.port, err = freePort(ns); err != nil {
			e.Close()
			return nil, err
		}
	}
	e.log.Debug("kernel WireGuard created", "port", e.port)
	return e, nil
}

// leftBehind says whether the WireGuard link named opts.Name holds
// opts.PrivateKey: then it is this node's, and no one else's to lose.
func leftBehind(opts Options) bool {
	if opts.PrivateKey == nil {
		return false
	}
	c, err := wgctrl.New()
	if err != nil {
		return false
	}
	defer c.Close()
	dev, err := c.Device(opts.Name)
	return err == nil && dev.PrivateKey == *opts.PrivateKey
}

// freePort returns a UDP port that is free in ns now.
func freePort(ns namespace) (int, error) {
	var port int
	err := ns.run(func() error {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return fmt.Errorf("wg: find a free UDP port: %w", err)
		}
		defer c.Close()
		port = c.LocalAddr().(*net.UDPAddr).Port
		return nil
	})
	return port, err
}

// listenProxy opens a relay proxy socket on 127.0.0.1 in the engine's
// namespace, where WireGuard can reach it.
func (e *kernel) listenProxy() (*net.UDPConn, error) {
	var c *net.UDPConn
	err := e.ns.run(func() (err error) {
		c, err = listenProxySocket()
		return err
	})
	return c, err
}

func (e *kernel) apply(d wgtypes.Config) error {
	if d.PrivateKey != nil {
		k := mac1Key(d.PrivateKey.PublicKey())
		e.mac1.Store(&k)
	}
	if err := e.client.ConfigureDevice(e.name, d); err != nil {
		return fmt.Errorf("wg: configure %s: %w", e.name, err)
	}
	return nil
}

// Set applies cfg, and brings the link up the first time; a zero
// ListenPort keeps the engine's port. A peer whose endpoint is a
// RelayEndpoint gets its relay proxy socket as endpoint instead.
func (e *kernel) Set(cfg Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.errClosed()
	}
	if err := validate(cfg); err != nil {
		return err
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = e.port
	}
	cfg, err := e.proxied(cfg)
	if err != nil {
		return err
	}
	e.bound = true
	e.port = cfg.ListenPort
	if err := e.state.set(cfg); err != nil {
		return err
	}
	e.keepInitiated()
	e.listening.Store(int32(cfg.ListenPort))
	if !e.up {
		if err := e.state.netif.up(); err != nil {
			return err
		}
		e.up = true
	}
	e.moveSideband(cfg.ListenPort)
	return nil
}

// moveSideband opens the raw sockets of port, WireGuard's now, unless
// they are open already. Without them the node still works, but cannot
// follow a change of NAT or leave the relay on its own.
func (e *kernel) moveSideband(port int) {
	if e.raw != nil && int(e.raw.port) == port {
		return
	}
	if e.raw != nil {
		e.raw.close()
	}
	e.raw, e.rawErr = openRawPort(e.ns, uint16(port), e.log, e.handshake)
	if e.rawErr != nil {
		e.log.Warn("no STUN or path probes from the WireGuard port, so a change of network is noticed only at restart", "err", e.rawErr)
	}
}

// handshake is the raw port's: the handshake message b came to
// WireGuard's port from from. If it shows a crossing that this end is to
// resolve (witness), WireGuard is made to initiate again initiateWait
// later, together with the other crossings due by then: a node that joins
// a large mesh may see many. Relayed messages are the proxy's to look at
// (they come from its sockets), and messages not meant for our key no
// one's.
func (e *kernel) handshake(b []byte, from netip.AddrPort) {
	if key := e.mac1.Load(); key == nil || !meantFor(b, key) {
		return
	}
	if _, relayed := e.proxy.peerOf(from); relayed {
		return
	}
	now := e.now()
	if !e.witness.saw(b, from, now) {
		return
	}
	e.crossedMu.Lock()
	defer e.crossedMu.Unlock()
	if _, ok := e.crossed[from]; ok || len(e.crossed) >= crossedMax {
		return
	}
	if e.crossed == nil {
		e.crossed = map[netip.AddrPort]time.Time{}
	}
	e.crossed[from] = now
	if !e.armed {
		e.armed = true
		e.after(initiateWait, e.initiateAgain)
	}
}

// Crossings waiting to be resolved: at most crossedMax (those past it
// wait for WireGuard's retry), of which initiateAgain takes at most
// passMax at a time, each peer's removal taking the kernel's locks.
const (
	crossedMax = 4096
	passMax    = 256
)

// initiateWait is how long after what looks like a crossing the kernel
// engine has WireGuard initiate again. What looks like one may not be:
// the peer's initiation may have come before we had the peer, and been
// dropped, so that the answer to ours completed a handshake, which the
// kernel takes in on its own time; initiateAgain sees it by then. And the
// other end's WireGuard drops initiations that follow the last it took in
// within 20 ms (INITIATIONS_PER_SECOND, on a coarse clock): ours must
// come after.
const initiateWait = 50 * time.Millisecond

// batchSlack is how much sooner than initiateWait a crossing may be
// resolved, with one due before it: crossings seen together are resolved
// together.
const batchSlack = initiateWait / 5

// due takes from crossed the endpoints whose crossing was seen at least
// initiateWait before now, or batchSlack less, at most passMax of them.
func due(crossed map[netip.AddrPort]time.Time, now time.Time) map[netip.AddrPort]bool {
	eps := map[netip.AddrPort]bool{}
	for ep, seen := range crossed {
		if len(eps) == passMax {
			break
		}
		if initiateWait-now.Sub(seen) <= batchSlack {
			eps[ep] = true
			delete(crossed, ep)
		}
	}
	return eps
}

// untilDue is how long until the first crossing in crossed is due, at
// least a millisecond; zero if there is none.
func untilDue(crossed map[netip.AddrPort]time.Time, now time.Time) time.Duration {
	var next time.Duration
	for _, seen := range crossed {
		if wait := max(initiateWait-now.Sub(seen), time.Millisecond); next == 0 || wait < next {
			next = wait
		}
	}
	return next
}

// initiateAgain has WireGuard send a new handshake initiation at once to
// the peers at the endpoints of the crossings due, those that still have
// no session: the kernel sends at most one initiation to a peer per
// REKEY_TIMEOUT (5 s), so each is removed and added again (its first
// initiation comes with its persistent keepalive). Without a session
// little goes with it: the packets queued while it waited (TCP sends them
// again), the handshake bytes counted, and the peer's cookie and last
// initiation's timestamp, which WireGuard learns again from the next. A
// peer with a session keeps it: a crossing of rekeying handshakes has the
// current session to go on with until WireGuard's retry. And a peer is
// made to initiate again at most once per REKEY_TIMEOUT, as WireGuard
// would, whatever comes to the port: a replayed crossing does no more.
//
// The next pass is armed only once this one is done, so that passes leave
// the engine to the daemon in between, however many crossings wait.
func (e *kernel) initiateAgain() {
	e.crossedMu.Lock()
	eps := due(e.crossed, e.now())
	e.crossedMu.Unlock()
	e.resolve(eps)

	e.crossedMu.Lock()
	defer e.crossedMu.Unlock()
	if next := untilDue(e.crossed, e.now()); next > 0 {
		e.after(next, e.initiateAgain)
	} else {
		e.armed = false
	}
}

// resolve is initiateAgain's for the crossings at the endpoints crossed.
func (e *kernel) resolve(crossed map[netip.AddrPort]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || len(crossed) == 0 {
		return
	}
	var peers []Peer
	for _, p := range e.state.peers {
		if usable(p.Endpoint) && crossed[unmap(p.Endpoint)] && e.now().Sub(e.initiated[p.PublicKey]) >= rekeyTimeout {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return
	}
	dev, err := e.client.Device(e.name)
	if err != nil {
		return
	}
	session := map[Key]bool{}
	for _, p := range dev.Peers {
		session[p.PublicKey] = e.now().Sub(p.LastHandshakeTime) < rejectAfterTime
	}
	peers = slices.DeleteFunc(peers, func(p Peer) bool { return session[p.PublicKey] })
	if len(peers) == 0 {
		return
	}
	slices.SortFunc(peers, func(a, b Peer) int { return bytes.Compare(a.PublicKey[:], b.PublicKey[:]) })
	// The removals and the adds go in two configurations: wgctrl splits
	// a large one into a message per peer, and gives a peer's endpoint
	// and keepalive only to the first entry of its key, here the removal.
	var remove, add []wgtypes.PeerConfig
	for _, p := range peers {
		remove = append(remove, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		add = append(add, peerConfig(p, true))
	}
	err = e.apply(wgtypes.Config{Peers: remove})
	if err == nil {
		err = e.apply(wgtypes.Config{Peers: add})
	}
	if err != nil {
		// Some removals may have been applied and not their adds: the
		// peers must be there, whatever else failed.
		if err := e.apply(wgtypes.Config{Peers: add}); err != nil {
			e.log.Error("crossed handshakes: WireGuard lost peers, until the daemon configures them again", "peers", len(add), "err", err)
			e.state.forget(nil)
			return
		}
		e.log.Warn("crossed handshakes: WireGuard refused part of a re-add, then took the peers back; those it did not remove it retries in 5 s", "peers", len(add), "err", err)
	}
	if e.initiated == nil {
		e.initiated = map[Key]time.Time{}
	}
	for _, p := range peers { // only now: a peer lost to a failure may try again
		e.initiated[p.PublicKey] = e.now()
		if err == nil {
			e.log.Debug("crossed handshakes: WireGuard initiates again", "peer", p.PublicKey, "endpoint", p.Endpoint)
		}
	}
}

// WireGuard's timers (the protocol's REKEY_TIMEOUT and REJECT_AFTER_TIME):
// the time between initiations to a peer, and how long a session lasts.
const (
	rekeyTimeout    = 5 * time.Second
	rejectAfterTime = 180 * time.Second
)

// keepInitiated forgets when WireGuard was made to initiate again to the
// peers it no longer has: one added again starts afresh, in WireGuard as
// here. The caller holds e.mu.
func (e *kernel) keepInitiated() {
	for k := range e.initiated {
		if _, ok := e.state.peers[k]; !ok {
			delete(e.initiated, k)
		}
	}
}

// sideband returns the raw port, or why there is none. The caller holds
// e.mu.
func (e *kernel) sideband() (*rawPort, error) {
	switch {
	case e.closed:
		return nil, e.errClosed()
	case !e.bound:
		return nil, fmt.Errorf("wg: %s has no WireGuard port before its first Set", e.name)
	case e.raw == nil:
		return nil, fmt.Errorf("wg: kernel WireGuard on %s holds UDP port %d, and %w: %w", e.name, e.port, e.rawErr, errors.ErrUnsupported)
	}
	return e.raw, nil
}

// proxied returns cfg with the endpoints of relayed peers replaced by
// their proxy sockets', and closes the sockets of the peers that are not
// in cfg. A peer keeps its socket while its VPN address (a single IPv4
// address among its allowed IPs) is in cfg, even with a direct endpoint:
// if the peer relays to us anyway, WireGuard roams to the socket.
func (e *kernel) proxied(cfg Config) (Config, error) {
	keep := proxiedAddrs(cfg.Peers)
	peers, err := e.proxiedPeers(cfg.Peers)
	if err != nil {
		return Config{}, err
	}
	cfg.Peers = peers
	e.proxy.retain(keep)
	return cfg, nil
}

// proxiedPeers is peers with a RelayEndpoint replaced by the proxy socket
// that reaches it (copied if any is).
func (e *kernel) proxiedPeers(peers []Peer) ([]Peer, error) {
	copied := false
	for i, p := range peers {
		vpn, ok := IsRelayEndpoint(p.Endpoint)
		if !ok {
			continue
		}
		ep, err := e.proxy.endpoint(vpn)
		if err != nil {
			return nil, err
		}
		if !copied {
			peers, copied = slices.Clone(peers), true
		}
		peers[i].Endpoint = ep
	}
	return peers, nil
}

// proxiedAddrs are the addresses whose proxy sockets peers may use: their
// allowed addresses and their relay endpoints'.
func proxiedAddrs(peers []Peer) map[netip.Addr]bool {
	keep := make(map[netip.Addr]bool)
	for _, p := range peers {
		for _, ip := range peerAddrs(p) {
			keep[ip] = true
		}
		if vpn, ok := IsRelayEndpoint(p.Endpoint); ok {
			keep[vpn.Unmap()] = true
		}
	}
	return keep
}

// peerAddrs are the single IPv4 addresses a peer is allowed: whose proxy
// sockets it may have.
func peerAddrs(p Peer) []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.AllowedIPs {
		if ip.IsSingleIP() && ip.Addr().Unmap().Is4() {
			out = append(out, ip.Addr().Unmap())
		}
	}
	return out
}

// Patch is Set's change to the peers: the relay's proxy sockets of the
// peers removed close, those of the peers patched open as Set opens them.
func (e *kernel) Patch(p Patch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.errClosed()
	}
	peers, err := e.proxiedPeers(p.Peers)
	if err != nil {
		return err
	}
	// The sockets of the addresses that the removed peers and the old
	// versions of the patched ones had, and that no patched peer has now.
	keep := proxiedAddrs(p.Peers)
	var gone []netip.Addr
	had := func(k Key) {
		if old, ok := e.state.peers[k]; ok {
			for _, ip := range peerAddrs(old) {
				if !keep[ip] {
					gone = append(gone, ip)
				}
			}
		}
	}
	for _, k := range p.Remove {
		had(k)
	}
	for _, q := range p.Peers {
		had(q.PublicKey)
	}
	if err := e.state.patch(Patch{Peers: peers, Remove: p.Remove}); err != nil {
		return err
	}
	e.keepInitiated()
	e.proxy.release(gone)
	return nil
}

func (e *kernel) Peers() ([]PeerStatus, error) {
	if e.isClosed() {
		return nil, e.errClosed()
	}
	dev, err := e.client.Device(e.name)
	if err != nil {
		return nil, fmt.Errorf("wg: read the state of %s: %w", e.name, err)
	}
	peers := make([]PeerStatus, len(dev.Peers))
	for i, p := range dev.Peers {
		peers[i] = peerStatus(p)
		if vpn, ok := e.proxy.peerOf(peers[i].Endpoint); ok {
			peers[i].Endpoint = RelayEndpoint(vpn)
		}
	}
	slices.SortFunc(peers, comparePeers)
	return peers, nil
}

func peerStatus(p wgtypes.Peer) PeerStatus {
	s := PeerStatus{PublicKey: p.PublicKey, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
	if p.Endpoint != nil {
		s.Endpoint = unmap(p.Endpoint.AddrPort())
	}
	if !p.LastHandshakeTime.IsZero() && !p.LastHandshakeTime.Equal(time.Unix(0, 0)) {
		s.LastHandshake = p.LastHandshakeTime
	}
	return s
}

// Discover queries server from the listen port: from a plain UDP socket
// until the first Set gives the port to WireGuard (a Set meanwhile waits
// for it), and through the raw port after.
func (e *kernel) Discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return netip.AddrPort{}, e.errClosed()
	}
	if e.bound {
		raw, err := e.sideband()
		e.mu.Unlock()
		if err != nil {
			return netip.AddrPort{}, err
		}
		return raw.discover(ctx, server)
	}
	defer e.mu.Unlock()
	var c *net.UDPConn
	err := e.ns.run(func() (err error) {
		c, err = net.ListenUDP(udpNetwork(server), &net.UDPAddr{Port: e.port})
		return err
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("wg: open UDP port %d for STUN: %w (is another program using it?)", e.port, err)
	}
	defer c.Close()
	return stun.Query(ctx, c, net.UDPAddrFromAddrPort(unmap(server)))
}

func udpNetwork(server netip.AddrPort) string {
	if server.Addr().Unmap().Is4() {
		return "udp4"
	}
	return "udp6"
}

// Probe checks the direct path to a peer's endpoint from the WireGuard
// port, through the raw port.
func (e *kernel) Probe(ctx context.Context, to netip.AddrPort) (time.Duration, error) {
	e.mu.Lock()
	raw, err := e.sideband()
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return raw.probe(ctx, to)
}

// SetRelay makes c the way to peers with relay endpoints, through their
// proxy sockets. The engine reads c until the caller closes it.
func (e *kernel) SetRelay(c *relay.Conn) error {
	if c != nil && e.isClosed() {
		return e.errClosed()
	}
	e.proxy.setConn(c)
	return nil
}

func (e *kernel) Port() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.port
}

func (e *kernel) Name() string { return e.name }
func (e *kernel) Kind() string { return KindKernel }

// Close deletes the link, with its address and routes, and the packet
// filter. Later calls do nothing.
func (e *kernel) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.proxy.close()
	if e.raw != nil {
		e.raw.close()
	}
	err := errors.Join(e.fw.close(), e.client.Close(), e.state.netif.remove())
	e.ns.close()
	return err
}

func (e *kernel) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (e *kernel) errClosed() error {
	return fmt.Errorf("wg: %s is closed: %w", e.name, net.ErrClosed)
}
