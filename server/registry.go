package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/relay"
)

// node is a node as the registry holds it in memory.
type node struct {
	record
	version uint64 // map version of the node's last change that peers see
	online  bool   // as of the last change or sweep
	dirty   bool   // heartbeat facts not yet written to the store
	relay   []byte // the node's relay token, made on request, kept in memory
}

func (n *node) peer() api.Peer {
	return api.Peer{
		NodeID: n.NodeID, NodeName: n.NodeName, VPNIP: n.VPNIP, WGPublicKey: n.WGPublicKey,
		PublicIP: n.PublicIP, Port: n.Port, NATPort: n.NATPort, LANIP: n.LANIP,
	}
}

// change is one entry of the registry's change log.
type change struct {
	version uint64
	nodeID  string
}

// registry is the mesh map: every node, a version that grows with each
// change peers must see, and a log of those changes, so that a node which
// already has version V is sent only what changed after V.
type registry struct {
	store *Store
	now   func() time.Time

	mu      sync.Mutex
	epoch   string // tells this run's versions from a previous run's
	version uint64
	horizon uint64 // the log holds every change after this version
	log     []change
	changed chan struct{} // closed and replaced at every change
	nodes   map[string]*node
	byKey   map[string]*node
	byName  map[string]*node
	byWG    map[string]*node
	alloc   *allocator
}

func newRegistry(store *Store, prefix netip.Prefix, now func() time.Time) *registry {
	b := make([]byte, 4)
	rand.Read(b)
	return &registry{
		store:   store,
		now:     now,
		epoch:   hex.EncodeToString(b),
		changed: make(chan struct{}),
		nodes:   make(map[string]*node),
		byKey:   make(map[string]*node),
		byName:  make(map[string]*node),
		byWG:    make(map[string]*node),
		alloc:   newAllocator(prefix),
	}
}

// load fills the registry from the store's records.
func (r *registry) load(recs []record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, rec := range recs {
		addr, err := netip.ParseAddr(rec.VPNIP)
		if err != nil {
			return fmt.Errorf("node %s: vpn_ip %q: %w", rec.NodeName, rec.VPNIP, err)
		}
		if err := r.alloc.take(addr, rec.NodeID); err != nil {
			return fmt.Errorf("node %s: %w", rec.NodeName, err)
		}
		n := &node{record: rec, online: now.Sub(rec.LastSeen) < api.Online}
		r.index(n)
		r.bump(n)
	}
	return nil
}

func (r *registry) index(n *node) {
	r.nodes[n.NodeID] = n
	r.byName[strings.ToLower(n.NodeName)] = n
	r.byWG[n.WGPublicKey] = n
	if n.NodeKey != "" {
		r.byKey[n.NodeKey] = n
	}
}

func (r *registry) unindex(n *node) {
	delete(r.nodes, n.NodeID)
	delete(r.byName, strings.ToLower(n.NodeName))
	delete(r.byWG, n.WGPublicKey)
	delete(r.byKey, n.NodeKey)
}

// bump records that n changed in a way peers see, and wakes long-polls.
// Callers hold r.mu.
func (r *registry) bump(n *node) {
	r.version++
	n.version = r.version
	r.log = append(r.log, change{r.version, n.NodeID})
	if len(r.log) > 4*len(r.nodes)+1024 {
		r.compact()
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// compact drops log entries superseded by a later change of the same node.
// Entries of removed nodes go too, so deltas from before now become full.
func (r *registry) compact() {
	last := make(map[string]uint64, len(r.nodes))
	for _, c := range r.log {
		last[c.nodeID] = c.version
	}
	kept := r.log[:0]
	for _, c := range r.log {
		if _, ok := r.nodes[c.nodeID]; ok && last[c.nodeID] == c.version {
			kept = append(kept, c)
		}
	}
	r.log = kept
	r.horizon = r.version // the removals before now are forgotten
}

// byPin returns the node that enrolled with the given TLS key pin.
func (r *registry) byPin(pin string) (*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.byKey[pin]
	return n, ok
}

// Errors of registration that the HTTP layer turns into responses.
var (
	ErrNotEnrolled = errors.New("this node is not enrolled (or was removed): join with a key from `wire server key create`")
	errForbidden   = errors.New("forbidden")
)

// enrolment is what a registration carries besides the request.
type enrolment struct {
	req      api.RegisterRequest
	pin      string // the node's TLS key pin; "" in --open mode
	publicIP string
	key      *api.JoinKey // nil in --open mode
}

// register enrols a new node or refreshes a known one, and returns a
// snapshot of the node as stored.
func (r *registry) register(ctx context.Context, e enrolment) (record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.pin != "" {
		if n, ok := r.byKey[e.pin]; ok {
			return r.refresh(ctx, n, e)
		}
	} else if n, ok := r.nodes[e.req.NodeID]; ok && e.key == nil {
		return r.refresh(ctx, n, e) // --open mode: whoever knows a node_id is that node
	}
	if e.key == nil && e.pin != "" {
		return record{}, ErrNotEnrolled
	}
	return r.enrol(ctx, e)
}

func (r *registry) enrol(ctx context.Context, e enrolment) (record, error) {
	now := r.now()
	rec := record{
		NodeID: e.req.NodeID, NodeName: e.req.NodeName, NodeKey: e.pin, WGPublicKey: e.req.WGPublicKey,
		PublicIP: e.publicIP, LANIP: e.req.LANIP, Port: e.req.Port, NATPort: e.req.NATPort,
		Created: now, LastSeen: now,
	}
	old, exists := r.nodes[rec.NodeID]
	if exists && old.NodeKey != "" {
		return record{}, &ErrConflict{Field: "node_id"}
	}
	if exists {
		// A node imported from an --open server claims its record with a
		// join key: it keeps its name and address, and gains a key.
		rec.VPNIP, rec.Created = old.VPNIP, old.Created
		return r.claim(ctx, old, rec, e.key)
	}
	if err := r.checkUnique(nil, rec); err != nil {
		return record{}, err
	}
	addr, err := r.alloc.allocate(rec.NodeID)
	if err != nil {
		return record{}, err
	}
	rec.VPNIP = addr.String()
	if err := r.store.Enrol(ctx, rec, e.key, now); err != nil {
		r.alloc.release(addr)
		return record{}, err
	}
	n := &node{record: rec, online: true}
	r.index(n)
	r.bump(n)
	return rec, nil
}

func (r *registry) claim(ctx context.Context, old *node, rec record, key *api.JoinKey) (record, error) {
	if err := r.checkUnique(old, rec); err != nil {
		return record{}, err
	}
	if err := r.store.Claim(ctx, rec, key, r.now()); err != nil {
		return record{}, err
	}
	r.unindex(old)
	n := &node{record: rec, online: true}
	r.index(n)
	r.bump(n)
	return rec, nil
}

// checkUnique says whether rec's name and WireGuard key are free for the
// node self (nil for a new node).
func (r *registry) checkUnique(self *node, rec record) error {
	if n, ok := r.byName[strings.ToLower(rec.NodeName)]; ok && n != self {
		return &ErrConflict{Field: "node_name"}
	}
	if n, ok := r.byWG[rec.WGPublicKey]; ok && n != self {
		return &ErrConflict{Field: "wg_public_key"}
	}
	return nil
}

// refresh applies a heartbeat from a known node.
func (r *registry) refresh(ctx context.Context, n *node, e enrolment) (record, error) {
	req := e.req
	if req.NodeID != n.NodeID {
		return record{}, fmt.Errorf("%w: node_id %q is not this node's (%s)", errForbidden, req.NodeID, n.NodeID)
	}
	identity := req.NodeName != n.NodeName || req.WGPublicKey != n.WGPublicKey
	if identity {
		next := n.record
		next.NodeName, next.WGPublicKey = req.NodeName, req.WGPublicKey
		if err := r.checkUnique(n, next); err != nil {
			return record{}, err
		}
		if err := r.store.UpdateIdentity(ctx, next); err != nil {
			return record{}, err
		}
		r.unindex(n)
		n.NodeName, n.WGPublicKey = next.NodeName, next.WGPublicKey
		r.index(n)
	}
	endpoint := n.PublicIP != e.publicIP || n.Port != req.Port || n.NATPort != req.NATPort || n.LANIP != req.LANIP
	n.PublicIP, n.Port, n.NATPort, n.LANIP = e.publicIP, req.Port, req.NATPort, req.LANIP
	n.LastSeen = r.now()
	n.dirty = true
	if identity || endpoint || !n.online {
		n.online = true
		r.bump(n)
	}
	return n.record, nil
}

// remove drops a node that the store no longer holds.
func (r *registry) remove(n *node) {
	r.unindex(n)
	if addr, err := netip.ParseAddr(n.VPNIP); err == nil {
		r.alloc.release(addr)
	}
	n.online = false
	r.bump(n)
}

// reload makes the registry match the store after another process (an
// admin command) changed it: nodes gone from the store leave the mesh.
// It returns their VPN addresses.
func (r *registry) reload(recs []record) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := make(map[string]bool, len(recs))
	for _, rec := range recs {
		keep[rec.NodeID] = true
	}
	var gone []netip.Addr
	for _, n := range r.nodes {
		if !keep[n.NodeID] {
			r.remove(n)
			if a, err := netip.ParseAddr(n.VPNIP); err == nil {
				gone = append(gone, a)
			}
		}
	}
	return gone
}

// sweep marks nodes offline whose last heartbeat is older than api.Online.
func (r *registry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, n := range r.nodes {
		if n.online && now.Sub(n.LastSeen) >= api.Online {
			n.online = false
			r.bump(n)
		}
	}
}

// dirty returns the nodes whose heartbeat facts are not yet stored, and
// marks them clean.
func (r *registry) takeDirty() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, n := range r.nodes {
		if n.dirty {
			out = append(out, n.record)
			n.dirty = false
		}
	}
	return out
}

// markDirty undoes takeDirty for records that could not be written.
func (r *registry) markDirty(recs []record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		if n, ok := r.nodes[rec.NodeID]; ok {
			n.dirty = true
		}
	}
}

// formatVersion and parseVersion make the opaque version string that
// nodes send back as ?since=.
func (r *registry) formatVersion(v uint64) string {
	return r.epoch + "." + strconv.FormatUint(v, 10)
}

func (r *registry) parseVersion(s string) (uint64, bool) {
	epoch, num, ok := strings.Cut(s, ".")
	if !ok || epoch != r.epoch {
		return 0, false
	}
	v, err := strconv.ParseUint(num, 10, 64)
	return v, err == nil
}

// peers returns the online set (since == "") or the changes after since.
// If nothing changed yet, it returns a channel that closes at the next
// change, so the caller can wait and ask again.
func (r *registry) peers(since string) (api.PeersResponse, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.parseVersion(since)
	if since == "" || !ok || v < r.horizon || v > r.version {
		resp := api.PeersResponse{Peers: r.online(), Full: since != ""}
		if since != "" {
			resp.Version = r.formatVersion(r.version)
		}
		return resp, nil
	}
	if v == r.version {
		return api.PeersResponse{Peers: []api.Peer{}, Version: since}, r.changed
	}
	return r.delta(v), nil
}

func (r *registry) online() []api.Peer {
	out := []api.Peer{}
	for _, n := range r.nodes {
		if n.online {
			out = append(out, n.peer())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeName < out[j].NodeName })
	return out
}

func (r *registry) delta(since uint64) api.PeersResponse {
	i := sort.Search(len(r.log), func(i int) bool { return r.log[i].version > since })
	resp := api.PeersResponse{Peers: []api.Peer{}, Version: r.formatVersion(r.version)}
	seen := make(map[string]bool)
	for _, c := range r.log[i:] {
		if seen[c.nodeID] {
			continue
		}
		seen[c.nodeID] = true
		if n, ok := r.nodes[c.nodeID]; ok && n.online {
			resp.Peers = append(resp.Peers, n.peer())
		} else {
			resp.Removed = append(resp.Removed, c.nodeID)
		}
	}
	return resp
}

// status is the seed's /status: every node seen in the last api.Listed.
func (r *registry) status(version string) api.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	st := api.Status{Version: version, Nodes: []api.NodeStatus{}}
	for _, n := range r.nodes {
		ago := now.Sub(n.LastSeen)
		if ago >= api.Listed {
			continue
		}
		ns := api.NodeStatus{
			NodeName: n.NodeName, VPNIP: n.VPNIP, PublicIP: n.PublicIP, NATPort: n.NATPort,
			Status: "offline", LastSeenAgo: int64(max(ago, 0) / time.Second),
		}
		if n.online {
			ns.Status = "online"
			st.Online++
		} else {
			st.Offline++
		}
		st.Nodes = append(st.Nodes, ns)
	}
	st.Total = len(st.Nodes)
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].NodeName < st.Nodes[j].NodeName })
	return st
}

// relayToken returns n's relay token, making one on first use.
func (r *registry) relayToken(n *node) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n.relay == nil {
		n.relay = make([]byte, relay.TokenLen)
		rand.Read(n.relay)
	}
	return n.relay
}

// Token implements relay.Tokens: the relay admits a node that has a token
// and is still in the mesh.
func (r *registry) Token(vpnIP netip.Addr) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[r.alloc.used[vpnIP]]
	if !ok || n.relay == nil {
		return nil, false
	}
	return n.relay, true
}

// lookupIP returns the node with the given VPN address.
func (r *registry) lookupIP(ip string) (*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	n, ok := r.nodes[r.alloc.used[addr]]
	return n, ok
}
