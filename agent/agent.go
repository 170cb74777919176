// Package agent carries signed events between the nodes of a mesh, over
// its tunnels: each node's inbox and outbox, what it knows of its peers'
// identity keys and how far it trusts them, and pairing.
package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

// Port is where every node's agent listens, on its VPN address only.
const Port = 8788

// Trust tiers of a peer.
const (
	// Introduced: known through the coordination server, which vouches
	// for its identity key.
	Introduced = "introduced"
	// Verified: paired by a person comparing digits; its key is pinned and
	// the server can no longer substitute another.
	Verified = "verified"
	// Blocked: this node refuses its events.
	Blocked = "blocked"
)

// Options configure an Agent.
type Options struct {
	// Dir is the node's state dir, where the agent keeps its store.
	Dir string
	// Key is the node's identity key.
	Key ed25519.PrivateKey
	// Self is this node's VPN address: the agent listens on it and sends
	// from it, so that peers know who is calling.
	Self netip.Addr
	// Interface is the WireGuard interface the listener is bound to ("":
	// none, for tests on loopback).
	Interface string
	// Port is the agent port of this node and its peers (default Port).
	Port   int
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent is one node's side of messaging.
type Agent struct {
	opts  Options
	log   *slog.Logger
	store *store
	self  string // this node's identity key, as events carry it
	http  *http.Client

	mu      sync.Mutex
	online  map[string]api.Peer // by node_id, as the daemon last said
	byIP    map[netip.Addr]string
	limits  map[string]*rate.Limiter // by node_id
	pairing *pairings
	sending map[string]*sync.Mutex // by node_id: see peerLock

	kick chan struct{} // the outbox has work for a peer that came online
}

// Open opens the agent's store.
func Open(opts Options) (*Agent, error) {
	if opts.Port == 0 {
		opts.Port = Port
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	st, err := openStore(opts.Dir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		opts: opts, log: opts.Logger, store: st, self: event.EncodeKey(opts.Key.Public().(ed25519.PublicKey)),
		online: map[string]api.Peer{}, byIP: map[netip.Addr]string{}, limits: map[string]*rate.Limiter{}, sending: map[string]*sync.Mutex{},
		kick: make(chan struct{}, 1),
	}
	a.pairing = newPairings(a)
	a.http = &http.Client{Transport: &http.Transport{
		DialContext: a.dial, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
	}, Timeout: sendTimeout}
	return a, nil
}

// Close closes the store.
func (a *Agent) Close() error {
	a.http.CloseIdleConnections()
	return a.store.close()
}

// SetPeers declares the online peers, as the coordination server lists
// them. Peers it has never seen are remembered, so that events can wait
// for them while they are offline.
func (a *Agent) SetPeers(ctx context.Context, peers []api.Peer) {
	a.mu.Lock()
	was := a.online
	a.online, a.byIP = make(map[string]api.Peer, len(peers)), make(map[netip.Addr]string, len(peers))
	changed, back := a.add(was, peers)
	a.mu.Unlock()
	a.settle(ctx, changed, back)
}

// UpdatePeers is SetPeers for a change, in time that grows with it: peers
// came online or changed, the peers with the ids in gone went; the others
// stay as they are.
func (a *Agent) UpdatePeers(ctx context.Context, peers []api.Peer, gone []string) {
	a.mu.Lock()
	for _, id := range gone {
		a.drop(id)
	}
	changed, back := a.add(a.online, peers)
	a.mu.Unlock()
	a.settle(ctx, changed, back)
}

// add puts peers online, and returns those that are new or changed since
// was, and those that were not online in it. Callers hold a.mu.
func (a *Agent) add(was map[string]api.Peer, peers []api.Peer) (changed, back []api.Peer) {
	for _, p := range peers {
		old, ok := was[p.NodeID]
		if !ok || old.NodeName != p.NodeName || old.VPNIP != p.VPNIP || old.NodeKey != p.NodeKey {
			changed = append(changed, p)
		}
		if !ok {
			back = append(back, p)
		}
		a.drop(p.NodeID)
		a.online[p.NodeID] = p
		if ip, err := netip.ParseAddr(p.VPNIP); err == nil {
			a.byIP[ip] = p.NodeID
		}
	}
	return changed, back
}

// drop takes the peer with id off the online set. Callers hold a.mu.
func (a *Agent) drop(id string) {
	p, ok := a.online[id]
	if !ok {
		return
	}
	delete(a.online, id)
	if ip, err := netip.ParseAddr(p.VPNIP); err == nil && a.byIP[ip] == id {
		delete(a.byIP, ip)
	}
}

// settle remembers the peers that changed, and sends what waited for
// those that came back.
func (a *Agent) settle(ctx context.Context, changed, back []api.Peer) {
	if len(changed) > 0 {
		err := a.store.inTx(ctx, func(st *store) error {
			for _, p := range changed {
				if err := a.remember(ctx, st, p); err != nil {
					return fmt.Errorf("%s: %w", p.NodeName, err)
				}
			}
			return nil
		})
		if err != nil {
			a.log.Warn("agent: recording peers", "peers", len(changed), "err", err)
		}
	}
	if len(back) > 0 {
		a.kickOutbox()
	}
}

// remember records a peer, and raises the alarm when the server's key for
// a verified peer is not the pinned one: under the same node_id, or under
// the name of a verified peer (another node took its name).
func (a *Agent) remember(ctx context.Context, st *store, p api.Peer) error {
	if err := st.savePeer(ctx, peerRow{NodeID: p.NodeID, NodeName: p.NodeName, VPNIP: p.VPNIP, NodeKey: p.NodeKey}, a.opts.Now()); err != nil {
		return err
	}
	row, err := st.peerByID(ctx, p.NodeID)
	if err != nil {
		return err
	}
	pinned := row
	if row.PinnedKey == "" {
		named, ok, err := st.verifiedNamed(ctx, p.NodeName, p.NodeID)
		if err != nil {
			return err
		}
		if !ok {
			return setAlert(ctx, st, row, "")
		}
		pinned = named
	}
	alert := ""
	if !keyHasPin(pinned.PinnedKey, p.NodeKey) {
		alert = fmt.Sprintf("the coordination server now presents another identity key for %s (pin %.12s…) than the one verified by pairing; "+
			"wire keeps the verified key and refuses the new one for messaging. If %s was re-installed, pair again after checking with its owner; "+
			"otherwise someone may be impersonating it", p.NodeName, p.NodeKey, p.NodeName)
		if row.KeyAlert == "" {
			a.log.Warn("agent: IDENTITY KEY CHANGED for a verified peer; refusing it", "node", p.NodeName, "node_id", p.NodeID,
				"pinned", pinned.PinnedKey, "server_pin", p.NodeKey)
		}
	}
	return setAlert(ctx, st, row, alert)
}

func setAlert(ctx context.Context, st *store, row peerRow, alert string) error {
	if alert == row.KeyAlert {
		return nil
	}
	return st.setPeerField(ctx, row.NodeID, "key_alert", alert)
}

// keyHasPin says whether pin is the pin of the identity key key.
func keyHasPin(key, pin string) bool {
	k, err := event.DecodeKey(key)
	if err != nil {
		return false
	}
	p, err := api.KeyPin(k)
	return err == nil && pin != "" && p.String() == pin
}

// isOnline returns the online peer of that node_id.
func (a *Agent) isOnline(nodeID string) (api.Peer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.online[nodeID]
	return p, ok
}

// find resolves a peer by name (any case), VPN IP or node_id: an online
// peer first (a name may have had other holders before), else the last
// one the store knows.
func (a *Agent) find(ctx context.Context, who string) (peerRow, error) {
	a.mu.Lock()
	id := ""
	for _, p := range a.online {
		if strings.EqualFold(p.NodeName, who) || p.VPNIP == who || p.NodeID == who {
			id = p.NodeID
			break
		}
	}
	a.mu.Unlock()
	if id != "" {
		who = id
	}
	return a.store.peer(ctx, who)
}

// peerAt returns the online peer whose VPN address is ip.
func (a *Agent) peerAt(ip netip.Addr) (api.Peer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.online[a.byIP[ip.Unmap()]]
	return p, ok
}

// tier is how far this node trusts a peer.
func tier(p peerRow) string {
	switch {
	case p.Blocked:
		return Blocked
	case p.PinnedKey != "":
		return Verified
	}
	return Introduced
}

// trustedKey is the key a peer's events must be signed with: the pinned
// one once paired, else the one the server vouches for ("" while not
// learned).
func trustedKey(p peerRow) string {
	if p.PinnedKey != "" {
		return p.PinnedKey
	}
	if keyHasPin(p.IdentityKey, p.NodeKey) {
		return p.IdentityKey
	}
	return ""
}

// acceptsKey says whether key may sign events of peer p, and why not.
func acceptsKey(p peerRow, key string) error {
	switch {
	case p.PinnedKey == "" && p.KeyAlert != "":
		return errors.New(p.KeyAlert)
	case p.PinnedKey != "" && key != p.PinnedKey:
		return fmt.Errorf("%s is verified with another identity key; this one is refused", p.NodeName)
	case p.PinnedKey != "":
		return nil
	case p.NodeKey == "":
		return fmt.Errorf("the coordination server vouches for no identity key of %s (an --open server): pair with it first", p.NodeName)
	case !keyHasPin(key, p.NodeKey):
		return fmt.Errorf("the key is not the identity key the coordination server knows for %s", p.NodeName)
	}
	return nil
}

// dial connects to a peer's agent from this node's VPN address.
func (a *Agent) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.opts.Self.AsSlice()}, Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, addr)
}

func (a *Agent) url(p api.Peer, path string) string {
	return "http://" + net.JoinHostPort(p.VPNIP, fmt.Sprint(a.opts.Port)) + path
}

// ErrNotAgent says the peer has no agent listening (an older wire).
var ErrNotAgent = errors.New("the peer's wire does not take messages (no agent on its VPN address: an older version, or it is starting)")
