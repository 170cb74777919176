package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
)

// Errors of registration that the HTTP layer turns into responses.
var (
	ErrNotEnrolled = errors.New("this node is not enrolled (or was removed): join with a key from `wire server key create`")
	errForbidden   = errors.New("forbidden")
	// ErrNodeExpired says a node's enrolment expired: see ExpiredError.
	ErrNodeExpired = errors.New("this node's enrolment expired")
	// errEnrolledMeanwhile says a registration's node enrolled while it
	// was on its way: a retry, or a seed node's first two heartbeats.
	errEnrolledMeanwhile = errors.New("enrolled meanwhile")
)

// ExpiredError says when a node's enrolment expired, and what to do. It
// is ErrNodeExpired.
type ExpiredError struct{ At time.Time }

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("%v at %s: authenticate it again with a join key (sudo wire up --join KEY, with a key from wire server key create)",
		ErrNodeExpired, e.At.UTC().Format(time.RFC3339))
}

func (e *ExpiredError) Is(target error) bool { return target == ErrNodeExpired }

// enrolment is what a registration carries besides the request.
type enrolment struct {
	req      api.RegisterRequest
	pin      string // the node's TLS key pin; "" in --open mode
	publicIP string
	key      *api.JoinKey // nil in --open mode
}

// register enrols a new node or refreshes a known one, and returns a
// snapshot of the node as stored.
//
// Nothing is written to the store under r.mu, which the long-polls and the
// relay's token lookups need: a write that changes what peers see is
// reserved under the lock (the names, keys and address it takes), made
// outside it, and then committed under it or undone. A registration that
// finds the same node's earlier one still writing (a retry, or a seed
// node's heartbeats overlapping its first) waits for it and starts again.
func (r *registry) register(ctx context.Context, e enrolment) (record, error) {
	var err error
	for range 4 { // each round waits for a write in flight, or for the store
		var rec record
		rec, err = r.registerOnce(ctx, e)
		var busy *inFlight
		switch {
		case errors.As(err, &busy):
			select {
			case <-busy.done:
			case <-ctx.Done():
				return record{}, ctx.Err()
			}
		case errors.Is(err, errEnrolledMeanwhile), errors.Is(err, errAddressTaken):
		case r.store.Shared() && errors.As(err, new(*ErrConflict)):
			// Another server sharing the store may have enrolled this node,
			// or given its name away: ask again once this one knows.
			r.awaitSync(ctx)
		default:
			return rec, err
		}
	}
	var busy *inFlight
	if errors.As(err, &busy) || errors.Is(err, errEnrolledMeanwhile) || errors.Is(err, errAddressTaken) {
		return record{}, &ErrConflict{Field: "node_id"}
	}
	return record{}, err // the last round's answer
}

// errAddressTaken says that another server sharing the store gave the
// address chosen for a new node to another node meanwhile: choose again.
var errAddressTaken = errors.New("address taken through another server")

func (r *registry) registerOnce(ctx context.Context, e enrolment) (record, error) {
	n, ok := r.known(e)
	if !ok && e.key == nil && e.pin != "" && r.store.Shared() {
		// Perhaps it enrolled through another server a moment ago.
		r.awaitSync(ctx)
		n, ok = r.known(e)
	}
	if ok {
		return r.refresh(ctx, n, e)
	}
	if e.key == nil && e.pin != "" {
		return record{}, ErrNotEnrolled
	}
	// The join key is checked before anything else, so that whoever lacks
	// a valid one learns nothing of which names, ids or keys exist.
	if e.key != nil {
		err := r.store.CheckKey(ctx, *e.key, r.now())
		if errors.Is(err, ErrKeyUsed) && e.pin != "" && r.store.Shared() {
			// Perhaps this very enrolment succeeded through another server
			// and its answer was lost: then this is its first heartbeat.
			r.awaitSync(ctx)
			if n, ok := r.known(e); ok {
				return r.refresh(ctx, n, e)
			}
		}
		if err != nil {
			return record{}, err
		}
	}
	return r.enrol(ctx, e)
}

// inFlight says that a registration of the same node is writing to the
// store; done closes when it has ended, one way or the other.
type inFlight struct{ done <-chan struct{} }

func (e *inFlight) Error() string { return "a registration of this node is in flight" }

// known returns the node a registration is the heartbeat of, if any: the
// node with the caller's TLS key, or in --open mode (where whoever knows a
// node_id is that node) the node with the request's node_id.
func (r *registry) known(e enrolment) (*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.pin != "" {
		n, ok := r.byKey[e.pin]
		return n, ok
	}
	if e.key == nil {
		n, ok := r.nodes[e.req.NodeID]
		return n, ok
	}
	return nil, false
}

// enrol adds a new node, or lets a node imported from an --open server
// claim its record.
func (r *registry) enrol(ctx context.Context, e enrolment) (record, error) {
	now := r.now()
	rec := record{
		NodeID: e.req.NodeID, NodeName: e.req.NodeName, NodeKey: e.pin, WGPublicKey: e.req.WGPublicKey,
		PublicIP: e.publicIP, LANIP: e.req.LANIP, Port: e.req.Port, NATPort: e.req.NATPort,
		Created: now, LastSeen: now,
	}
	res, imported, err := r.reserveNew(&rec)
	if err != nil {
		return record{}, err
	}
	var g grant
	if imported != nil {
		g, err = r.store.Claim(ctx, rec, e.key, now)
	} else {
		g, err = r.store.Enrol(ctx, rec, e.key, now)
	}
	rec.Tags, rec.ExpiresAt = g.Tags, g.ExpiresAt
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreserve(res)
	if err != nil {
		if imported != nil {
			return record{}, err
		}
		addr := netip.MustParseAddr(rec.VPNIP)
		var conflict *ErrConflict
		if errors.As(err, &conflict) && conflict.Field == "vpn_ip" && r.store.Shared() {
			r.alloc.takenElsewhere(addr, r.commits) // until this server learns by whom
			return record{}, errAddressTaken
		}
		r.alloc.release(addr)
		return record{}, err
	}
	if imported != nil {
		r.unindex(imported)
	}
	n := &node{record: rec, savedSeen: rec.LastSeen, said: saidBy(e.req)}
	r.index(n)
	r.setOnline(n, true)
	r.bump(n)
	r.counts.enrolled.Add(1)
	return rec, nil
}

// reserveNew checks that rec's id, name, WireGuard key and TLS key are
// free, takes them and an address for it, and fills in rec.VPNIP. If rec
// claims a node imported from an --open server, it returns that node.
func (r *registry) reserveNew(rec *record) (*reservation, *node, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, exists := r.nodes[rec.NodeID]
	if exists && old.NodeKey == rec.NodeKey {
		return nil, nil, errEnrolledMeanwhile // by an earlier request of its own
	}
	if res := r.held[reserved{reservedID, rec.NodeID}]; res != nil {
		return nil, nil, &inFlight{res.done} // then see who it was
	}
	if err := r.checkFree(old, *rec); err != nil {
		return nil, nil, err
	}
	if !exists {
		addr, err := r.alloc.allocate(rec.NodeID)
		if err != nil {
			return nil, nil, err
		}
		rec.VPNIP = addr.String()
		return r.reserve(rec.NodeID, *rec), nil, nil
	}
	if err := claimable(old, *rec); err != nil {
		return nil, nil, err
	}
	// An imported node keeps its name unless it asks for another, its
	// address, and its creation time, and gains a TLS key.
	rec.VPNIP, rec.Created = old.VPNIP, old.Created
	return r.reserve(rec.NodeID, *rec), old, nil
}

// claimable says whether rec may claim the existing node old: only a node
// imported from an --open server (one without a TLS key) can be claimed,
// and only by the node that holds its WireGuard key. Anyone with a valid
// join key may know another node's node_id; only that node itself has
// the private half of the WireGuard key it registered, and it proves that
// by completing WireGuard handshakes with its peers, not here. Requiring
// the same public key means a claim cannot change which machine the mesh
// sends a peer's traffic to.
func claimable(old *node, rec record) error {
	if old.NodeKey != "" {
		return &ErrConflict{Field: "node_id"}
	}
	if old.WGPublicKey != rec.WGPublicKey {
		return fmt.Errorf("%w: node_id %s was imported with another WireGuard key; only the node that has that key can claim it. "+
			"If this node's key changed on purpose, remove the imported node (wire server node remove %s) and join again: it gets a new address",
			errForbidden, rec.NodeID, old.NodeName)
	}
	return nil
}

// checkFree says whether rec's name, WireGuard key and TLS key are free
// for the node self (nil for a new node): held by no other node, and by no
// registration in flight. One of the same node's own in flight is waited
// for (an *inFlight error).
func (r *registry) checkFree(self *node, rec record) error {
	for _, c := range []struct {
		field string
		index map[string]*node
		v     reserved
	}{
		{"node_name", r.byName, reserved{reservedName, strings.ToLower(rec.NodeName)}},
		{"wg_public_key", r.byWG, reserved{reservedWG, rec.WGPublicKey}},
		{"node_key", r.byKey, reserved{reservedKey, rec.NodeKey}},
	} {
		if c.v.value == "" {
			continue
		}
		if n, ok := c.index[c.v.value]; ok && n != self {
			return &ErrConflict{Field: c.field}
		}
		if res := r.held[c.v]; res != nil {
			if res.owner == rec.NodeID {
				return &inFlight{res.done}
			}
			return &ErrConflict{Field: c.field}
		}
	}
	return nil
}

// refresh applies a heartbeat from a known node. A new name or WireGuard
// key is written to the store before it is acknowledged; everything else
// in a heartbeat reaches the store in the next batch.
func (r *registry) refresh(ctx context.Context, n *node, e enrolment) (record, error) {
	req := e.req
	if req.NodeID != n.NodeID {
		return record{}, fmt.Errorf("%w: node_id %q is not this node's (%s)", errForbidden, req.NodeID, n.NodeID)
	}
	if err := r.reauthenticate(ctx, n, e); err != nil {
		return record{}, err
	}
	res, next, renamed, err := r.reserveIdentity(n, req, e.pin == "")
	if err != nil {
		return record{}, err
	}
	if res != nil {
		err = r.store.UpdateIdentity(ctx, next, renamed)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreserve(res)
	if errors.Is(err, ErrNotEnrolled) && r.nodes[n.NodeID] == n {
		r.remove(n) // the store no longer has it: removed through another process
	}
	if err != nil {
		return record{}, err
	}
	if r.nodes[n.NodeID] != n {
		return record{}, ErrNotEnrolled // removed by the admin meanwhile
	}
	identity := n.NodeName != next.NodeName || n.WGPublicKey != next.WGPublicKey
	if identity {
		r.unindex(n)
		n.NodeName, n.WGPublicKey = next.NodeName, next.WGPublicKey
		r.index(n)
	}
	endpoint := n.PublicIP != e.publicIP || n.Port != req.Port || n.NATPort != req.NATPort || n.LANIP != req.LANIP ||
		n.said.relayTCP != req.RelayTCP
	n.said = saidBy(req)
	n.PublicIP, n.Port, n.NATPort, n.LANIP = e.publicIP, req.Port, req.NATPort, req.LANIP
	n.LastSeen = r.now()
	if !n.DownAt.IsZero() { // up again: the store's DownAt goes with the heartbeat's facts
		n.DownAt, n.Up, n.downStored = time.Time{}, true, false
	}
	n.dirty = true
	if identity || endpoint || !n.online {
		n.urgent = true
		r.setOnline(n, true)
		r.bump(n)
	}
	r.counts.heartbeats.Add(1)
	return n.record, nil
}

// reauthenticate lets a node whose enrolment expired back in with the
// join key its registration carries, spending a use of it, and sets when
// it expires next. A node that has not expired keeps its expiry, key or
// not: an enrolment retried with its key does not spend it twice.
func (r *registry) reauthenticate(ctx context.Context, n *node, e enrolment) error {
	r.mu.Lock()
	if !n.expired(r.now()) {
		r.mu.Unlock()
		return nil
	}
	if e.key == nil {
		r.mu.Unlock()
		return &ExpiredError{At: n.ExpiresAt}
	}
	res := r.reserve(n.NodeID, record{NodeID: n.NodeID}) // a read of the store meanwhile leaves it be
	r.mu.Unlock()
	g, err := r.store.Reauthenticate(ctx, n.NodeID, *e.key, r.now())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreserve(res)
	if err != nil {
		return err
	}
	n.ExpiresAt = g.ExpiresAt
	return nil
}

// reserveIdentity checks a heartbeat's name and WireGuard key. If either
// changed, it reserves them and returns the record to write; otherwise the
// reservation is nil. The name changes only if the node asks for a new
// one (or is a seed node, which has no way to learn another): a node that
// sends the name it had before an admin renamed it keeps the new one.
// renamed says the name changed.
func (r *registry) reserveIdentity(n *node, req api.RegisterRequest, seed bool) (res *reservation, next record, renamed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next = n.record
	renamed = (req.Rename || seed) && req.NodeName != n.NodeName
	if !renamed && req.WGPublicKey == n.WGPublicKey {
		return nil, next, false, nil
	}
	if renamed {
		next.NodeName = req.NodeName
	}
	next.WGPublicKey = req.WGPublicKey
	if err := r.checkFree(n, next); err != nil {
		return nil, record{}, false, err
	}
	return r.reserve(n.NodeID, next), next, renamed, nil
}

// reserved is one value that a registration in flight holds: a node_id,
// a lowercased name, a WireGuard key or a TLS key pin.
type reserved struct {
	kind  reservedKind
	value string
}

type reservedKind uint8

const (
	reservedID reservedKind = iota
	reservedName
	reservedWG
	reservedKey
)

// reservation is what one registration in flight holds until its store
// write ends: values that no other registration may take meanwhile.
type reservation struct {
	owner  string // node_id
	values []reserved
	done   chan struct{} // closed when it ends
}

// reserve takes rec's id, name, WireGuard key and TLS key for the node
// with node_id owner. Callers hold r.mu and have checked they are free.
func (r *registry) reserve(owner string, rec record) *reservation {
	res := &reservation{owner: owner, done: make(chan struct{})}
	for _, v := range []reserved{
		{reservedID, rec.NodeID}, {reservedName, strings.ToLower(rec.NodeName)},
		{reservedWG, rec.WGPublicKey}, {reservedKey, rec.NodeKey},
	} {
		if v.value != "" && r.held[v] == nil {
			r.held[v] = res
			res.values = append(res.values, v)
		}
	}
	return res
}

// unreserve gives back what reserve took, and wakes whoever waits for it.
// Callers hold r.mu.
func (r *registry) unreserve(res *reservation) {
	if res == nil {
		return
	}
	for _, v := range res.values {
		delete(r.held, v)
	}
	close(res.done)
}
