package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/policy"
)

// node is a node as the registry holds it in memory.
type node struct {
	record
	version uint64 // map version of the node's last change that peers see
	online  bool   // as of the last change or sweep
	dirty   bool   // heartbeat facts not yet written to the store
	urgent  bool   // among them, some that servers sharing the store must see soon
	// savedSeen is the last-seen time as last written (or read): a
	// long-poll makes the node dirty only when it is a minute older.
	savedSeen time.Time
	// downStored says that DownAt was learnt from the store (the node went
	// down through another server), so a stored up ends it too.
	downStored bool
	// added is the registry's commit count when the node was added: the
	// store held it for every reload that began after that.
	added uint64
	// match is what the node matches in the policy, for the name and tags
	// in matchKey; viewFrom the version from which its view is current.
	match    policy.Match
	matchKey string
	viewFrom uint64
	// said is what the node said of itself in its last registration here,
	// for the admin's dashboard: kept in memory only.
	said said
}

// said is what a node says of itself that only its admin reads.
type said struct {
	version  string
	relayed  []string // node ids of peers it reaches through the relay
	relayTCP bool     // it reaches the relay over TCP: peers see it (api.Peer.RelayTCP)
}

// saidBy is what a registration says that the server keeps in memory.
func saidBy(req api.RegisterRequest) said {
	return said{version: req.Version, relayed: req.Relayed, relayTCP: req.RelayTCP}
}

func (n *node) peer() api.Peer {
	return api.Peer{
		NodeID: n.NodeID, NodeName: n.NodeName, VPNIP: n.VPNIP, WGPublicKey: n.WGPublicKey,
		PublicIP: n.PublicIP, Port: n.Port, NATPort: n.NATPort, LANIP: n.LANIP, NodeKey: n.NodeKey,
		RelayTCP: n.said.relayTCP,
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
	horizon uint64 // the log names every node changed after this version
	log     []change
	changed chan struct{} // closed and replaced at every change
	// changedAt is when changed was last closed, in Unix nanoseconds:
	// read without r.mu by the long-polls it woke.
	changedAt atomic.Int64
	nodes     map[string]*node
	byKey     map[string]*node
	byName    map[string]*node
	byWG      map[string]*node
	alloc     *allocator
	held      map[reserved]*reservation // by registrations whose store write is in flight
	commits   uint64                    // counts nodes added and marks taken: see node.added, mark
	// policy is the mesh's policy, nil if none; views taken before
	// policyFrom predate its last change.
	policy     *policy.Policy
	policyFrom uint64
	full       *fullAnswer   // the last shared full answer, see sharedFull
	maps       digests       // the map's digest, see digest.go
	syncedCh   chan struct{} // closed and replaced at every read of the store's changes

	counts counts  // read without r.mu, by the public /health
	tokens *tokens // the relay's, under a lock of their own
}

// counts are the registry's node counts, kept as it changes so that
// public endpoints read them in O(1) without the registry's lock.
type counts struct {
	total, online        atomic.Int64
	enrolled, heartbeats atomic.Uint64 // new nodes enrolled here, heartbeats answered here
}

// mapKey keys the map digests (see digest.go): servers sharing a store
// must have the same.
func newRegistry(store *Store, prefix netip.Prefix, now func() time.Time, mapKey []byte) *registry {
	b := make([]byte, 4)
	rand.Read(b)
	return &registry{
		store:    store,
		now:      now,
		epoch:    hex.EncodeToString(b),
		changed:  make(chan struct{}),
		syncedCh: make(chan struct{}),
		nodes:    make(map[string]*node),
		byKey:    make(map[string]*node),
		byName:   make(map[string]*node),
		byWG:     make(map[string]*node),
		alloc:    newAllocator(prefix),
		held:     make(map[reserved]*reservation),
		tokens:   newTokens(),
		maps:     newDigests(mapKey),
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
		n := &node{record: rec, savedSeen: rec.LastSeen, downStored: !rec.DownAt.IsZero()}
		r.index(n)
		r.setOnline(n, n.fresh(now))
		r.bump(n)
	}
	return nil
}

// index adds n to the maps that find it. Callers hold r.mu.
func (r *registry) index(n *node) {
	r.commits++
	n.added = r.commits
	r.counts.total.Add(1)
	r.nodes[n.NodeID] = n
	r.byName[strings.ToLower(n.NodeName)] = n
	r.byWG[n.WGPublicKey] = n
	if n.NodeKey != "" {
		r.byKey[n.NodeKey] = n
	}
}

// unindex removes n from the maps that find it. Callers hold r.mu.
func (r *registry) unindex(n *node) {
	r.setOnline(n, false)
	r.counts.total.Add(-1)
	delete(r.nodes, n.NodeID)
	delete(r.byName, strings.ToLower(n.NodeName))
	delete(r.byWG, n.WGPublicKey)
	delete(r.byKey, n.NodeKey)
}

// count returns how many nodes are enrolled and how many are online,
// without the registry's lock.
func (r *registry) count() (total, online int) {
	return int(r.counts.total.Load()), int(r.counts.online.Load())
}

// setOnline marks n online or offline. Callers hold r.mu.
func (r *registry) setOnline(n *node, online bool) {
	if n.online == online {
		return
	}
	n.online = online
	if online {
		r.counts.online.Add(1)
	} else {
		r.counts.online.Add(-1)
	}
}

// bump records that n changed in a way peers see, and wakes long-polls.
// Callers hold r.mu.
func (r *registry) bump(n *node) {
	r.version++
	n.version = r.version
	r.rematch(n)
	r.maps.set(r, n, r.version)
	r.log = append(r.log, change{r.version, n.NodeID})
	if len(r.log) > 4*len(r.nodes)+1024 {
		r.compact()
	}
	r.wake()
}

// wake wakes the long-polls. Callers hold r.mu.
func (r *registry) wake() {
	close(r.changed)
	r.changed = make(chan struct{})
	r.changedAt.Store(time.Now().UnixNano())
}

// lastChange is when the long-polls were last woken.
func (r *registry) lastChange() time.Time { return time.Unix(0, r.changedAt.Load()) }

// compact drops log entries superseded by a later change of the same
// node: a delta still names every node that changed after any version
// from the horizon on, with its latest state. Only forgetting the removal
// of a node makes older versions need a full answer, so removals are kept
// until there are more than maxTombstones(), oldest forgotten first.
func (r *registry) compact() {
	last := make(map[string]uint64, len(r.nodes))
	for _, c := range r.log {
		last[c.nodeID] = c.version
	}
	kept := r.log[:0]
	tombstones := 0
	for _, c := range r.log {
		if last[c.nodeID] == c.version {
			kept = append(kept, c)
			if _, ok := r.nodes[c.nodeID]; !ok {
				tombstones++
			}
		}
	}
	r.log = r.forget(kept, tombstones-r.maxTombstones())
	r.maps.trim(r.horizon, len(r.nodes)+1024)
}

// maxTombstones is how many removals the change log remembers.
func (r *registry) maxTombstones() int { return len(r.nodes) + 1024 }

// forget drops the n oldest removals from log, moving the horizon past
// them. Callers hold r.mu.
func (r *registry) forget(log []change, n int) []change {
	if n <= 0 {
		return log
	}
	kept := log[:0]
	for _, c := range log {
		if _, ok := r.nodes[c.nodeID]; !ok && n > 0 {
			n--
			r.horizon = c.version
			continue
		}
		kept = append(kept, c)
	}
	return kept
}

// vpnIP is n's VPN address, which a read of the store's changes may move.
func (r *registry) vpnIP(n *node) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return n.VPNIP
}

// byPin returns the node that enrolled with the given TLS key pin.
func (r *registry) byPin(pin string) (*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.byKey[pin]
	return n, ok
}

// remove drops a node that the store no longer holds: its address is
// freed and its relay token forgotten. Callers hold r.mu.
func (r *registry) remove(n *node) {
	r.unindex(n)
	if addr, err := netip.ParseAddr(n.VPNIP); err == nil {
		r.alloc.release(addr)
		r.tokens.forget(addr)
	}
	r.bump(n)
}

// mark is taken before reading the store for a reload: every node added
// up to it was in the store when the read began. Each mark is a new value
// (after every earlier mark and addition), so that what happened after it
// can be told from what happened before.
func (r *registry) mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	return r.commits
}

// reload makes the registry match the store after another process (an
// admin command) changed it: tags change as recs say; nodes gone from recs, a read of the store that
// began after mark, leave the mesh. A node added after mark may be missing
// from recs only because the read began before its write, so it stays, and
// reload reports that it must run again with a newer read. It returns the
// removed nodes' VPN addresses.
func (r *registry) reload(recs []record, mark uint64) (gone []netip.Addr, again bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := make(map[string]*record, len(recs))
	for i := range recs {
		keep[recs[i].NodeID] = &recs[i]
	}
	for _, n := range r.nodes {
		switch rec := keep[n.NodeID]; {
		case rec != nil:
			r.retag(n, rec.Tags)
		case n.added > mark:
			again = true
		default:
			r.remove(n)
			if a, err := netip.ParseAddr(n.VPNIP); err == nil {
				gone = append(gone, a)
			}
		}
	}
	return gone, again
}

// retag gives n the tags an admin gave it. Callers hold r.mu.
func (r *registry) retag(n *node, tags []string) {
	if !slices.Equal(n.Tags, tags) {
		n.Tags = tags
		r.bump(n)
	}
}

// offline takes n out of the online set now, as its going down says, and
// returns its VPN address and the time it went down.
func (r *registry) offline(n *node) (netip.Addr, time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes[n.NodeID] != n {
		return netip.Addr{}, time.Time{}, ErrNotEnrolled
	}
	n.DownAt, n.downStored = r.now(), false
	if n.online {
		r.setOnline(n, false)
		r.bump(n)
	}
	addr, err := netip.ParseAddr(n.VPNIP)
	return addr, n.DownAt, err
}

// saidDown says whether the node said it goes down (wire down), through
// this server or another, and has not sent a heartbeat since.
func (n *node) saidDown() bool { return !n.DownAt.IsZero() && !n.LastSeen.After(n.DownAt) }

// fresh says whether n counts as online at now: heard from within
// api.Online, and not since it said it goes down.
func (n *node) fresh(now time.Time) bool {
	return now.Sub(n.LastSeen) < api.Online && !n.saidDown() && !n.expired(now)
}

// expiredAt says whether n's enrolment expired, and when.
func (r *registry) expiredAt(n *node) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return n.ExpiresAt, n.expired(r.now())
}

// expired says whether n must authenticate again before it may be in the
// mesh (see ExpiresAt).
func (n *node) expired(now time.Time) bool { return !n.ExpiresAt.IsZero() && !now.Before(n.ExpiresAt) }

// alive records that n long-polls, which is as good a sign of life as a
// heartbeat: its last-seen time moves on (reaching the store once a
// minute), and a node marked offline for its silence is online again.
func (r *registry) alive(n *node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes[n.NodeID] != n || n.saidDown() {
		// Removed; or it said it goes down, and only its next heartbeat
		// brings it back: a poll still on its way then must not.
		return
	}
	n.LastSeen = r.now()
	if n.LastSeen.Sub(n.savedSeen) >= seenWrite {
		n.dirty = true
	}
	if !n.online {
		n.urgent = true
		r.setOnline(n, true)
		r.bump(n)
	}
}

// seenWrite is how stale a polling node's stored last-seen time may get.
const seenWrite = time.Minute

// sweep marks nodes offline whose last heartbeat is older than api.Online,
// and those whose enrolment expired.
func (r *registry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, n := range r.nodes {
		if n.online && !n.fresh(now) { // silent too long, or expired
			r.setOnline(n, false)
			r.bump(n)
		}
	}
}

// takeSeen returns the nodes whose heartbeat facts are not yet stored (with
// urgent, only those that servers sharing the store must see soon), and
// marks them clean.
func (r *registry) takeSeen(urgent bool) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, n := range r.nodes {
		if n.urgent || (n.dirty && !urgent) {
			out = append(out, n.record)
			n.dirty, n.urgent, n.Up = false, false, false
			n.savedSeen = n.LastSeen
		}
	}
	return out
}

// untake undoes takeSeen(urgent) for records that could not be written.
func (r *registry) untake(recs []record, urgent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		if n, ok := r.nodes[rec.NodeID]; ok {
			n.dirty = true
			n.urgent = n.urgent || urgent
			n.Up = n.Up || rec.Up
		}
	}
}

// versionString is the opaque version string that nodes send back as
// ?since=: this run's epoch, its version, and (without a policy) the
// digest of the map at that version. Callers hold r.mu.
func (r *registry) versionString() string {
	s := r.epoch + "." + strconv.FormatUint(r.version, 10)
	if r.policy == nil {
		s += "." + r.maps.sum.String()
	}
	return s
}

// parseVersion places a version string in this run's change log: by its
// version if this run made it, else by its digest, if this run held that
// map. Callers hold r.mu.
func (r *registry) parseVersion(s string) (uint64, bool) {
	epoch, rest, ok := strings.Cut(s, ".")
	if !ok {
		return 0, false
	}
	num, sum, _ := strings.Cut(rest, ".")
	if epoch != r.epoch {
		if sum == "" || r.policy != nil {
			return 0, false
		}
		return r.maps.lookup(sum)
	}
	v, err := strconv.ParseUint(num, 10, 64)
	return v, err == nil
}

// peers returns the online set (since == "") or the changes after since,
// as the node with id viewer ("": the admin, or anyone in --open mode) may
// see them. If nothing changed yet, it returns a channel that closes at
// the next change, so the caller can wait and ask again.
func (r *registry) peers(since, viewer string) (api.PeersResponse, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vw := r.viewOf(viewer)
	if since == "" || r.needsFull(since, vw) {
		resp := api.PeersResponse{Peers: r.online(vw), Full: since != ""}
		if since != "" {
			resp.Version = r.versionString()
		}
		return resp, nil
	}
	if now := r.versionString(); since == now {
		return api.PeersResponse{Peers: []api.Peer{}, Version: now}, r.changed
	}
	v, _ := r.parseVersion(since)
	return r.delta(v, vw), nil
}

// needsFull says whether a poll from since must get the whole view: the
// registry has no delta from that version (another run's, compacted away,
// unknown), or the view changed after it. Callers hold r.mu.
func (r *registry) needsFull(since string, vw view) bool {
	v, ok := r.parseVersion(since)
	return !ok || v < r.horizon || v > r.version || !r.current(vw, v)
}

func (r *registry) online(vw view) []api.Peer {
	out := []api.Peer{}
	for _, n := range r.nodes {
		if n.online && vw.sees(n) {
			out = append(out, vw.peer(n))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeName < out[j].NodeName })
	return out
}

// delta is what changed after since: a node that the viewer no longer
// sees is removed, as one that went offline is.
func (r *registry) delta(since uint64, vw view) api.PeersResponse {
	i := sort.Search(len(r.log), func(i int) bool { return r.log[i].version > since })
	resp := api.PeersResponse{Peers: []api.Peer{}, Version: r.versionString()}
	seen := make(map[string]bool)
	for _, c := range r.log[i:] {
		if seen[c.nodeID] {
			continue
		}
		seen[c.nodeID] = true
		if n, ok := r.nodes[c.nodeID]; ok && n.online && vw.sees(n) {
			resp.Peers = append(resp.Peers, vw.peer(n))
		} else {
			resp.Removed = append(resp.Removed, c.nodeID)
		}
	}
	return resp
}

// status is the seed's /status: every node seen in the last api.Listed,
// of those the node with id viewer may see (see peers).
func (r *registry) status(version, viewer string) api.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	vw := r.viewOf(viewer)
	st := api.Status{Version: version, Nodes: []api.NodeStatus{}}
	for _, n := range r.nodes {
		ago := now.Sub(n.LastSeen)
		if ago >= api.Listed || !vw.sees(n) {
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

// relayToken returns n's relay token, making one on first use; it fails
// if n has left the mesh, so that a removed node's token never outlives it
// to speak for the next node given its address.
func (r *registry) relayToken(n *node) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes[n.NodeID] != n {
		return nil, ErrNotEnrolled
	}
	return r.tokens.get(netip.MustParseAddr(n.VPNIP)), nil
}

// Token implements relay.Tokens: the relay admits a node that has a token
// and is still in the mesh. It takes only the tokens' lock, so relayed
// packets never wait for the registry.
func (r *registry) Token(vpnIP netip.Addr) ([]byte, bool) { return r.tokens.lookup(vpnIP) }

// lookupIP returns the node with the given VPN address, if the node with
// id viewer may see it (see peers).
func (r *registry) lookupIP(ip, viewer string) (*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	n, ok := r.nodes[r.alloc.used[addr]]
	return n, ok && r.viewOf(viewer).sees(n)
}
