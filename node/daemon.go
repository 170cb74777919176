package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/resolver"
	"github.com/wire-mesh/wire/sysdns"
	"github.com/wire-mesh/wire/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Intervals of the daemon's loops.
const (
	heartbeatEvery = api.Heartbeat
	discoverEvery  = 5 * time.Second
	pollWait       = 25 * time.Second
	// Stale is how old a handshake may be for a path to count as up:
	// WireGuard renews sessions every 2 minutes while traffic flows.
	Stale = 3 * time.Minute
)

// NewEngine makes the WireGuard engine. The daemon gives it the interface
// name, the listen port from the start (kernel WireGuard's STUN query,
// before the first Set, is sent from it), the node's private key and its
// logger. Tests replace it with a fake.
type NewEngine func(wg.Options) (wg.Engine, error)

// Daemon runs one node.
type Daemon struct {
	dir        string
	log        *slog.Logger
	newEngine  NewEngine
	resolvConf string

	cfg    Config
	keys   Keys
	client *api.Client
	engine wg.Engine
	ln     *net.UnixListener

	mu          sync.Mutex
	peers       map[string]api.Peer // by node_id, without this node
	version     string
	wireVersion string         // Options.Version
	publicIP    string         // this node's address as the server sees it
	mapped      netip.AddrPort // the WireGuard port's public mapping
	told        netip.AddrPort // the mapping the server last accepted
	pollStop    context.CancelFunc
	names       *resolver.Server
	sysdns      *sysdns.Manager
	agent       *agent.Agent // nil while messaging is off, for agentErr
	agentErr    error
	reachable   bool // the last call to the server worked
	// Heartbeats: how often (the server may ask for fewer, when it counts
	// long-polls as signs of life: then they go on the poll's connection,
	// between polls, so that a node holds one connection), when the last
	// poll was answered, and whether one is due for the poll loop to send.
	hbEvery      atomic.Int64 // a time.Duration
	lastPoll     atomic.Int64 // Unix nanoseconds
	heartbeatDue atomic.Bool
	metrics      *metrics
	metricsLn    net.Listener     // nil without one
	removed      bool             // the server said it does not know this node
	expired      bool             // the server said this node's enrolment expired
	paths        map[string]*path // by node_id
	relay        relayState
	fed          fed // what the engine was given, see engine.go
	down         chan struct{}
	downOnce     sync.Once

	// cacheDue says the peer cache is out of date (see keepCache).
	cacheDue chan struct{}

	// reapply asks the reconciler, the one goroutine that configures the
	// engine once Run has started, to apply the current state; requests
	// made while it applies fold into one more round.
	reapply chan struct{}
}

// Options of a daemon.
type Options struct {
	Dir       string
	Logger    *slog.Logger
	NewEngine NewEngine
	// ResolvConf is the system's resolver config, read (only when a query
	// for a name outside the mesh comes) for the resolvers to forward it
	// to; "" forwards nothing.
	ResolvConf string
	// ResolverDir is macOS's per-domain resolver dir; with ResolvConf,
	// where the daemon points the system at its resolver (see package
	// sysdns). Both "" leave the system alone.
	ResolverDir string
	// Version is this wire's version, which the daemon tells its server.
	Version string
}

// New loads the node's config and keys.
func New(o Options) (*Daemon, error) {
	cfg, err := LoadConfig(o.Dir)
	if err != nil {
		return nil, err
	}
	keys, err := LoadKeys(o.Dir)
	if err != nil {
		return nil, err
	}
	client, err := cfg.client(keys)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		dir: o.Dir, log: o.Logger, newEngine: o.NewEngine, resolvConf: o.ResolvConf, cfg: cfg, keys: keys, client: client,
		sysdns: sysdns.New(sysdns.Options{StateDir: o.Dir, ResolvConf: o.ResolvConf, ResolverDir: o.ResolverDir, Logger: o.Logger}),
		peers:  loadPeers(o.Dir), paths: map[string]*path{}, fed: newFed(), down: make(chan struct{}),
		reapply: make(chan struct{}, 1), cacheDue: make(chan struct{}, 1), wireVersion: o.Version,
	}
	d.metrics = newMetrics(d)
	for _, p := range d.peers {
		d.fed.added(p)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Config is the node's config.
func (d *Daemon) Config() Config { return d.cfg }

// Start brings the interface up with the cached peers and registers once.
// A server that cannot be reached is not an error (the tunnels come back
// from the cache); one that says the node is not enrolled is.
func (d *Daemon) Start(ctx context.Context) (err error) {
	if err := d.listen(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.ln.Close()
		}
	}()
	if at := d.cfg.MetricsListen; at != "" {
		if d.metricsLn, err = net.Listen("tcp", at); err != nil {
			return fmt.Errorf("metrics listen on %s: %w (see wire up --metrics-listen)", at, err)
		}
		defer func() {
			if err != nil {
				d.metricsLn.Close()
			}
		}()
	}
	e, err := d.newEngine(wg.Options{Name: d.cfg.Interface, ListenPort: d.cfg.ListenPort, PrivateKey: &d.keys.WG, Logger: d.log})
	if err != nil {
		return err
	}
	d.engine = e
	d.openAgent()
	d.openNames()
	// STUN first: kernel WireGuard takes the port at the first Set, after
	// which only raw sockets can send from it, and those need CAP_NET_RAW.
	d.discover(ctx)
	if err := d.apply(); err != nil {
		d.closeAll()
		return err
	}
	if err := d.register(ctx); err != nil && !d.isUnreachable(err) {
		d.closeAll()
		return err
	}
	d.peersChanged(ctx)
	d.setSystemDNS()
	return nil
}

// closeAll closes what Start opened, after the loops have stopped.
func (d *Daemon) closeAll() {
	d.engine.Close()
	if d.agent != nil {
		d.agent.Close()
	}
}

// Run serves the control socket and keeps the node in step with the mesh
// until ctx ends or Down is called; then it removes the interface.
//
// The control socket closes last, after the interface is gone: a client
// that waits for the socket to stop answering (wire down does) knows the
// node is down, and a wire up right after cannot race the teardown.
func (d *Daemon) Run(ctx context.Context) error {
	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { d.serve(serveCtx); close(served) }()
	defer func() { stopServing(); <-served }()
	defer d.closeAll()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){d.reconcile, d.pollPeers, d.heartbeat, d.rediscover, d.choosePaths, d.keepRelay, d.serveAgent, d.serveNames, d.keepCache, d.serveMetrics, d.trimMemory} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	select {
	case <-ctx.Done():
		d.log.Info("stopping", "why", context.Cause(ctx))
	case <-d.down:
		d.log.Info("stopping", "why", "wire down")
	}
	cancel()
	wg.Wait()
	d.revertSystemDNS()
	d.goOffline() // after the loops: no heartbeat may follow it
	return nil
}

// goOffline tells the server this node is going down, so that its peers
// drop it within a second rather than when its heartbeats stop; a node
// that cannot tell it (a crash, no server) ages out as before.
func (d *Daemon) goOffline() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.client.Offline(ctx); err != nil {
		d.log.Info("could not tell the server this node goes offline; peers will see it when its heartbeats stop", "err", err)
	}
}

// jittered is a random time from 3/4 of period to period (so on average
// 7/8), so that nodes started together (after a power cut, or by one
// script) do not stay in step.
func jittered(period time.Duration) time.Duration { return period/4*3 + rand.N(period/4+1) }

// Down stops Run.
func (d *Daemon) Down() { d.downOnce.Do(func() { close(d.down) }) }

func (d *Daemon) isUnreachable(err error) bool {
	var se *api.StatusError
	return !errors.As(err, &se)
}

// register sends a heartbeat with the current mapping.
func (d *Daemon) register(ctx context.Context) error { return d.registerWith(ctx, "") }

// Authenticate sends a heartbeat with a join key, which lets the node
// back into the mesh once its enrolment expired (and is not spent if it
// has not). The key must be for this node's servers.
func (d *Daemon) Authenticate(ctx context.Context, joinKey string) error {
	k, err := api.ParseJoinKey(joinKey)
	if err != nil {
		return err
	}
	if k.Pin.String() != d.cfg.ServerPin {
		return errors.New("the join key is for another server than this node's")
	}
	if err := d.registerWith(ctx, k.String()); err != nil {
		return err
	}
	d.reconnect() // a poll waiting out its backoff goes again at once
	return nil
}

// registerWith sends a heartbeat with the current mapping, and joinKey
// if not "".
func (d *Daemon) registerWith(ctx context.Context, joinKey string) error {
	d.mu.Lock()
	req := d.cfg.registerRequest(d.keys, d.mapped)
	req.Version, req.Relayed = d.wireVersion, d.relayedPeers()
	req.RelayTCP = d.relay.overTCP()
	d.mu.Unlock()
	req.JoinKey = joinKey
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := d.client.Register(ctx, req)
	d.setReachable(err)
	if err != nil {
		switch {
		case isExpired(err):
			return fmt.Errorf("%w (the server said: %w)", ErrExpired, err)
		case isRemoved(err):
			return fmt.Errorf("%w (the server said: %w)", ErrRemoved, err)
		}
		return err
	}
	d.setHeartbeat(resp.HeartbeatEvery)
	d.mu.Lock()
	d.publicIP = resp.YourIP
	d.told = netip.AddrPortFrom(d.mapped.Addr(), uint16(req.NATPort))
	changed := resp.VPNIP != d.cfg.VPNIP
	domainChanged := resp.DNSDomain != d.cfg.DNSDomain
	was := d.cfg.NodeName
	if domainChanged {
		d.cfg.DNSDomain = resp.DNSDomain
	}
	renamed := d.cfg.named(resp.NodeName)
	if domainChanged || renamed {
		if err := d.cfg.Save(d.dir); err != nil {
			d.log.Warn("saving the config", "err", err)
		}
	}
	if was != d.cfg.NodeName {
		d.log.Info("the server renamed this node", "from", was, "to", d.cfg.NodeName)
	}
	d.mu.Unlock()
	if domainChanged || renamed {
		d.setNames()
		d.setSystemDNS()
	}
	if changed {
		return fmt.Errorf("the server moved this node from %s to %s: run wire up again", d.cfg.VPNIP, resp.VPNIP)
	}
	return nil
}

// ErrRemoved says the server does not know this node: its admin removed
// it (or the server's state was lost).
var ErrRemoved = errors.New("this node was removed from the mesh: the server no longer knows its key. " +
	"To join again: sudo wire down, then sudo wire up --server URL --join KEY, with a new key from wire server key create")

// ErrExpired says the node's enrolment expired: it is out of the mesh
// until it authenticates again with a join key.
var ErrExpired = errors.New("this node's enrolment expired: it is out of the mesh until it authenticates again. " +
	"To do so: sudo wire up --join KEY, with a key from wire server key create")

// isRemoved says whether err is the server's answer for a node it does
// not know (or knows, but whose enrolment expired: isExpired).
func isRemoved(err error) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusUnauthorized
}

// isExpired says whether err is the server's answer for a node whose
// enrolment expired.
func isExpired(err error) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusUnauthorized && se.Reason == api.CodeNodeExpired
}

// setReachable records what a call to the server said of it, and of this
// node's enrolment.
func (d *Daemon) setReachable(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var se *api.StatusError
	d.reachable = err == nil || errors.As(err, &se)
	switch {
	case err == nil:
		d.removed, d.expired = false, false
	case isExpired(err):
		if !d.expired {
			d.log.Warn("this node's enrolment expired: authenticate it again with sudo wire up --join KEY", "err", err)
		}
		d.expired = true
	case isRemoved(err) && !d.removed:
		d.removed = true
		d.log.Warn("the server does not know this node any more", "err", err)
	}
}

func (d *Daemon) heartbeat(ctx context.Context) {
	for {
		period := d.heartbeatPeriod()
		sleep(ctx, jittered(period))
		if ctx.Err() != nil {
			return
		}
		if period > heartbeatEvery && time.Since(time.Unix(0, d.lastPoll.Load())) < period {
			d.heartbeatDue.Store(true) // polls flow: the poll loop sends it on its connection
			continue
		}
		d.sendHeartbeat(ctx)
	}
}

func (d *Daemon) sendHeartbeat(ctx context.Context) {
	if err := d.register(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("heartbeat failed", "err", err)
	}
}

// heartbeatPeriod is how often this node heartbeats: every 30 s, or less
// often if the server asked, within the window in which it counts as
// online.
func (d *Daemon) heartbeatPeriod() time.Duration {
	if p := time.Duration(d.hbEvery.Load()); p > 0 {
		return p
	}
	return heartbeatEvery
}

// setHeartbeat takes the period a register answer asks for, if any.
func (d *Daemon) setHeartbeat(secs int) { d.hbEvery.Store(int64(api.HeartbeatPeriod(secs))) }

// every calls f about every period until ctx ends, each wait jittered.
func every(ctx context.Context, period time.Duration, f func()) {
	for {
		sleep(ctx, jittered(period))
		if ctx.Err() != nil {
			return
		}
		f()
	}
}

// discover asks the server's STUN for the WireGuard port's public
// mapping, from that very port; it reports whether the mapping changed.
func (d *Daemon) discover(ctx context.Context) bool {
	server, err := d.stunServer(ctx)
	if err != nil {
		d.log.Debug("no STUN server address", "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	mapped, err := d.engine.Discover(ctx, server)
	if err != nil {
		d.log.Debug("STUN discovery failed", "server", server, "err", err)
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if mapped == d.mapped {
		return false
	}
	d.log.Info("public mapping of the WireGuard port", "was", d.mapped, "now", mapped)
	if d.mapped.IsValid() {
		d.metrics.rediscovered.Inc()
	}
	d.mapped = mapped
	if d.cfg.NATPort != int(mapped.Port()) {
		// Kept for when STUN cannot be asked: kernel WireGuard without
		// raw sockets, from the first Set on.
		d.cfg.NATPort = int(mapped.Port())
		if err := d.cfg.Save(d.dir); err != nil {
			d.log.Warn("saving the NAT mapping", "err", err)
		}
	}
	return true
}

func (d *Daemon) stunServer(ctx context.Context) (netip.AddrPort, error) {
	// The server in use: after a failover, its STUN and relay.
	u, _ := api.ParseServerURL(d.client.URL())
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %v", u.Hostname(), err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(d.cfg.STUNPort)), nil
}

// rediscover re-runs STUN, so a laptop that changed networks tells its
// peers its new endpoint within a second of noticing. Until the server has
// accepted the new mapping, every round tries again.
func (d *Daemon) rediscover(ctx context.Context) {
	t := time.NewTicker(discoverEvery)
	defer t.Stop()
	changes := netChanges(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changes:
			sleep(ctx, 200*time.Millisecond) // let the new route settle
		}
		if d.discover(ctx) {
			d.reconnect() // connections from the old address are dead
		}
		d.mu.Lock()
		stale := d.mapped.IsValid() && d.mapped != d.told
		d.mu.Unlock()
		if stale {
			if err := d.register(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("registering the new mapping failed; retrying", "err", err)
			}
		}
	}
}

// reconnect drops the connections to the server, which may be bound to an
// address this machine no longer has, and restarts the peer poll.
func (d *Daemon) reconnect() {
	d.client.CloseIdle()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pollStop != nil {
		d.pollStop()
	}
}

// heartbeatNow has the poll loop send a heartbeat at once, cutting its
// poll short.
func (d *Daemon) heartbeatNow() {
	d.heartbeatDue.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pollStop != nil {
		d.pollStop()
	}
}

// pollPeers long-polls the server for peer changes and applies them.
func (d *Daemon) pollPeers(ctx context.Context) {
	retry := backoff{first: time.Second, cap: 10 * time.Second}
	for ctx.Err() == nil {
		d.mu.Lock()
		since := d.version
		d.mu.Unlock()
		if since == "" {
			since = "0"
		}
		if d.heartbeatDue.Swap(false) {
			d.sendHeartbeat(ctx) // on the connection the poll will use
		}
		// reconnect() cancels the poll, and the wait after a failed one.
		wctx, stop := context.WithCancel(ctx)
		d.mu.Lock()
		d.pollStop = stop
		d.mu.Unlock()
		pctx, cancel := context.WithTimeout(wctx, pollWait+10*time.Second)
		resp, err := d.client.Peers(pctx, since, pollWait)
		cancel()
		d.setReachable(err)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				stop()
				continue // reconnect() asked for a fresh poll
			}
			var se *api.StatusError
			switch {
			case isRemoved(err):
				retry.atLeast(heartbeatEvery) // until someone rejoins it, or it authenticates again
			case errors.As(err, &se) && se.RetryAfter > 0:
				retry.atLeast(se.RetryAfter) // the server is busy and said when to come back
			}
			if ctx.Err() == nil {
				d.log.Debug("peer poll failed", "err", err, "waited", retry.wait(wctx))
			}
			stop()
			continue
		}
		stop()
		retry.reset()
		d.lastPoll.Store(time.Now().UnixNano())
		if ch, ok := d.merge(resp); ok {
			d.changed()
			d.peersMoved(ctx, ch)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// merge folds a /peers answer into the peer map; it reports a change,
// and what it was.
func (d *Daemon) merge(resp api.PeersResponse) (peerChange, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.version = resp.Version
	if !resp.Full && len(resp.Peers) == 0 && len(resp.Removed) == 0 {
		return peerChange{}, false
	}
	ch := peerChange{full: resp.Full}
	if resp.Full {
		for id, p := range d.peers {
			d.fed.dropped(p)
			d.fed.stale[id] = true
		}
		d.peers = map[string]api.Peer{}
	}
	for _, p := range resp.Peers {
		if p.NodeID == d.cfg.NodeID { // itself, as the server holds it
			ch.renamed = d.cfg.named(p.NodeName)
			continue
		}
		if old, ok := d.peers[p.NodeID]; ok {
			d.fed.dropped(old)
			if old.NodeName != p.NodeName {
				ch.gone = append(ch.gone, old.NodeName)
			}
		}
		d.peers[p.NodeID] = p
		d.fed.added(p)
		d.fed.stale[p.NodeID] = true
		ch.peers = append(ch.peers, p)
	}
	for _, id := range resp.Removed {
		if old, ok := d.peers[id]; ok {
			d.fed.dropped(old)
			ch.gone = append(ch.gone, old.NodeName)
			ch.goneIDs = append(ch.goneIDs, id)
		}
		delete(d.peers, id)
		d.fed.stale[id] = true
	}
	for id := range d.fed.stale { // what is known of peers that left goes too
		if _, ok := d.peers[id]; !ok {
			delete(d.paths, id)
		}
	}
	select { // the cache writer saves it, soon and outside d.mu
	case d.cacheDue <- struct{}{}:
	default:
	}
	return ch, true
}

// peerChange is what one answer changed in the peer map: all of it, or
// the peers it listed, the ids of those it removed, and the names no
// longer in use (of peers removed or renamed).
type peerChange struct {
	full    bool
	peers   []api.Peer
	goneIDs []string
	gone    []string
	renamed bool // this node's own name changed: an admin renamed it
}

// peersMoved tells what else follows the peer map besides WireGuard (the
// agent and the resolver) what changed in it.
func (d *Daemon) peersMoved(ctx context.Context, ch peerChange) {
	if ch.renamed {
		d.renamed()
	}
	if ch.full || ch.renamed {
		d.peersChanged(ctx)
		return
	}
	if d.agent != nil {
		d.agent.UpdatePeers(ctx, ch.peers, ch.goneIDs)
	}
	names := make(map[string]netip.Addr, len(ch.peers))
	for _, p := range ch.peers {
		if a, err := netip.ParseAddr(p.VPNIP); err == nil {
			names[p.NodeName] = a
		}
	}
	d.mu.Lock() // in order with setNames's
	defer d.mu.Unlock()
	d.names.Update(names, ch.gone)
}

// renamed saves the config with the name an admin gave this node.
func (d *Daemon) renamed() {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	d.log.Info("the server's admin renamed this node", "name", cfg.NodeName)
	if err := cfg.Save(d.dir); err != nil {
		d.log.Warn("saving the config", "err", err)
	}
}

// peersChanged gives the peer map to what else follows it besides
// WireGuard: the agent and the resolver.
func (d *Daemon) peersChanged(ctx context.Context) {
	d.tellAgent(ctx)
	d.setNames()
}

// changed asks the reconciler to apply the current state. It never waits:
// a request while one is pending is the same request.
func (d *Daemon) changed() {
	select {
	case d.reapply <- struct{}{}:
	default:
	}
}

// reconcile is the engine's one owner while the daemon runs: it applies
// the state as it is when a change was asked for, one Set at a time, so
// that an older snapshot can never be applied after a newer one (three
// loops change the state: the peer poll, path choice and the relay).
//
// After a failure it tries again, after a backoff, without waiting for the
// next change.
func (d *Daemon) reconcile(ctx context.Context) {
	retry := backoff{first: time.Second, cap: 30 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.reapply:
			if err := d.apply(); err != nil {
				d.log.Error("configuring WireGuard failed; trying again soon", "err", err)
				retry.wait(ctx)
				d.changed()
				continue
			}
			retry.reset()
		}
	}
}

// nudge sends one datagram through the tunnel to each peer whose endpoint
// changed, so WireGuard handshakes with the new endpoint now, and this
// side's NAT opens towards it, instead of at the next keepalive (25 s).
// New peers need no nudge: WireGuard greets them at once. Nor do peers
// the engine holds asleep (see wg's lazy.go), whose next handshake goes
// to the new endpoint anyway: a nudge would wake them, and a node that
// moved would be greeted by every node of the mesh at once.
func (d *Daemon) nudge(self netip.Addr, moved []wg.Peer) {
	s, lazy := d.engine.(interface{ Asleep(wg.Key) bool })
	var to []netip.Addr
	for _, p := range moved {
		if len(p.AllowedIPs) > 0 && !(lazy && s.Asleep(p.PublicKey)) {
			to = append(to, p.AllowedIPs[0].Addr())
		}
	}
	if len(to) == 0 {
		return
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: self.AsSlice()})
	if err != nil {
		return
	}
	defer conn.Close()
	for _, ip := range to {
		conn.WriteToUDP([]byte{0}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9))) // discard
	}
}

// wgPeer is a peer as WireGuard needs it. Callers hold d.mu.
func (d *Daemon) wgPeer(p api.Peer) (wg.Peer, error) {
	key, err := wgtypes.ParseKey(p.WGPublicKey)
	if err != nil {
		return wg.Peer{}, err
	}
	vpn, err := netip.ParseAddr(p.VPNIP)
	if err != nil {
		return wg.Peer{}, err
	}
	ep := d.endpoint(p)
	if pa := d.paths[p.NodeID]; pa != nil && pa.relayed && d.relay.up {
		ep = wg.RelayEndpoint(vpn)
	}
	return wg.Peer{PublicKey: key, Endpoint: ep, AllowedIPs: []netip.Prefix{netip.PrefixFrom(vpn, 32)}}, nil
}

// endpoint picks where to reach a peer directly: its LAN address when it
// is behind the same NAT as this node (no hairpin through the router),
// else its public address and STUN-discovered port.
func (d *Daemon) endpoint(p api.Peer) netip.AddrPort {
	if p.PublicIP == d.publicIP && p.LANIP != "" {
		if ip, err := netip.ParseAddr(p.LANIP); err == nil && ip.Zone() == "" {
			return netip.AddrPortFrom(ip, uint16(p.Port))
		}
	}
	ip, err := netip.ParseAddr(p.PublicIP)
	if err != nil {
		return netip.AddrPort{}
	}
	port := p.NATPort
	if port == 0 {
		port = p.Port
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port))
}
