package server

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Servers sharing a store (replicas on PostgreSQL) each keep the whole
// mesh in memory, and learn what the others wrote by reading the store's
// changes every watchEvery. An admin command writing a SQLite store is
// noticed the same way. What a server writes that the others must know
// at once (an enrolment, a new name or key, a node coming online or
// moving) is written within watchEvery; last-seen times in batches.

// syncState is where a server is in reading the store's changes.
type syncState struct {
	rev     int64     // the store revision the registry holds everything up to
	full    bool      // read every node next time, not only the changes
	ok      time.Time // last successful read
	failing bool      // the last read failed, and that was logged
}

// sync brings the registry up to what the store holds: the changes since
// the last read, or every node after a failure or a long gap (when the
// removals kept in the store may no longer cover it).
func (s *Server) sync(ctx context.Context) {
	st := &s.syncs
	if st.full || s.cfg.Now().Sub(st.ok) > tombstoneAge/2 {
		s.syncAll(ctx)
		return
	}
	mark := s.reg.mark()
	recs, removed, rev, err := s.store.Changes(ctx, st.rev)
	if err != nil {
		s.syncFailed(err)
		return
	}
	s.syncDone(rev)
	switch {
	case rev < st.rev:
		// The store went back (restored from a backup, migrated again):
		// its revisions no longer say what changed.
		s.log.Warn("the store's revision went back: reading every node again", "was", st.rev, "now", rev)
		st.full = true
		return
	case rev == st.rev && len(recs)+len(removed) == 0:
		return
	}
	gone, consistent := s.reg.apply(recs, removed, mark)
	s.applied(ctx, gone)
	st.rev, st.full = rev, !consistent
}

// syncAll reads every node, and drops those the store no longer holds.
func (s *Server) syncAll(ctx context.Context) {
	st := &s.syncs
	rev, err := s.store.Revision(ctx)
	if err != nil {
		s.syncFailed(err)
		return
	}
	mark := s.reg.mark()
	recs, err := s.store.Nodes(ctx)
	if err != nil {
		s.syncFailed(err)
		return
	}
	s.syncDone(rev)
	gone, again := s.reg.reload(recs, mark)
	more, consistent := s.reg.apply(recs, nil, mark)
	s.applied(ctx, append(gone, more...))
	if !again && consistent {
		st.rev, st.full = rev, false
	}
}

func (s *Server) syncFailed(err error) {
	if !s.syncs.failing {
		s.log.Error("reading the store's changes; serving what is known until it answers", "store", s.store.Path(), "err", err)
	}
	s.syncs.failing, s.syncs.full = true, true
}

func (s *Server) syncDone(rev int64) {
	if s.syncs.failing {
		s.log.Info("the store answers again", "store", s.store.Path(), "revision", rev)
	}
	s.syncs.failing, s.syncs.ok = false, s.cfg.Now()
	s.reg.synced()
}

// applied takes removed nodes off the relay and reloads the policy.
func (s *Server) applied(ctx context.Context, gone []netip.Addr) {
	for _, addr := range gone {
		s.relay.Forget(addr) // a removed node loses the relay at once
	}
	if err := s.loadPolicy(ctx); err != nil {
		s.log.Error("the policy in force stays", "err", err)
	}
}

// synced wakes whoever waits for the next read of the store's changes.
func (r *registry) synced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.syncedCh)
	r.syncedCh = make(chan struct{})
}

// awaitSync waits for the next read of the store's changes, so that a
// node that enrolled through another server is known here: at most
// syncWait, or until ctx ends.
func (r *registry) awaitSync(ctx context.Context) {
	r.mu.Lock()
	ch := r.syncedCh
	r.mu.Unlock()
	t := time.NewTimer(syncWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

const syncWait = 2 * time.Second

// apply makes the registry hold what the store's changes, read after
// mark, say: nodes removed, nodes enrolled through another server, and new
// names, keys, tags, endpoints and last-seen times. Of a node's heartbeat
// facts, the newer (by last seen) of the store's and the registry's wins.
// A node that a registration here is writing, or wrote after mark (so the
// read may predate it), is left as it is, and apply returns false: what
// the read says of it must be read again, with every node. It returns the
// removed nodes' addresses.
func (r *registry) apply(recs []record, removed []string, mark uint64) (gone []netip.Addr, consistent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	consistent = true
	defer func() {
		if consistent {
			r.alloc.releaseElsewhere(mark)
		}
	}()
	drop := func(n *node) {
		r.remove(n)
		if a, err := netip.ParseAddr(n.VPNIP); err == nil {
			gone = append(gone, a)
		}
	}
	busy := func(id string) bool {
		if r.held[reserved{reservedID, id}] != nil {
			return true
		}
		n := r.nodes[id]
		return n != nil && n.added > mark
	}
	for _, id := range removed {
		switch n := r.nodes[id]; {
		case n == nil:
		case busy(id):
			consistent = false
		default:
			drop(n)
		}
	}
	// Nodes whose name, keys or address changed leave the indexes first,
	// and all come back after: one read may swap two nodes' names.
	var moved []*node
	now := r.now()
	for _, rec := range recs {
		if busy(rec.NodeID) {
			consistent = false
			continue
		}
		n := r.nodes[rec.NodeID]
		if n == nil {
			moved = append(moved, &node{record: rec, savedSeen: rec.LastSeen, downStored: !rec.DownAt.IsZero()})
			continue
		}
		if sameIdentity(n.record, rec) {
			if r.update(n, rec, now) {
				r.bump(n)
			}
			continue
		}
		r.unindex(n)
		if a, err := netip.ParseAddr(n.VPNIP); err == nil && a.String() != rec.VPNIP {
			r.alloc.release(a)
			r.tokens.forget(a)
			gone = append(gone, a)
		}
		n.NodeName, n.NodeKey, n.WGPublicKey, n.VPNIP = rec.NodeName, rec.NodeKey, rec.WGPublicKey, rec.VPNIP
		r.update(n, rec, now)
		moved = append(moved, n)
	}
	for _, n := range moved {
		addr, err := netip.ParseAddr(n.VPNIP)
		if err != nil {
			consistent = false
			r.bump(n) // out of the map until a read says more
			continue
		}
		// What the store gives this node, no other node holds: one that
		// does here is out of date, and its own change is in this read or
		// it has gone.
		for _, other := range r.holders(n, addr) {
			drop(other)
		}
		if err := r.alloc.take(addr, n.NodeID); err != nil {
			consistent = false // not in the subnet: nothing to do but report it
			r.bump(n)
			continue
		}
		r.index(n)
		r.setOnline(n, n.fresh(now))
		r.bump(n)
	}
	return gone, consistent
}

func sameIdentity(a, b record) bool {
	return a.NodeName == b.NodeName && a.NodeKey == b.NodeKey && a.WGPublicKey == b.WGPublicKey && a.VPNIP == b.VPNIP
}

// update takes from rec the tags and the expiry and, if rec's are news,
// the heartbeat facts, and says whether peers see a change. Callers hold
// r.mu.
func (r *registry) update(n *node, rec record, now time.Time) bool {
	changed := !slices.Equal(n.Tags, rec.Tags)
	n.Tags = rec.Tags
	n.ExpiresAt = rec.ExpiresAt // set by an admin, or a new authentication here or elsewhere
	// The store's facts are news if they are no older than this server's
	// (to the second, as stored), or strictly newer than those it has not
	// written yet: its own write read back is not news.
	stored, mine := rec.LastSeen.Unix(), n.LastSeen.Unix()
	if stored > mine || (stored == mine && !n.dirty) {
		changed = changed || n.PublicIP != rec.PublicIP || n.Port != rec.Port || n.NATPort != rec.NATPort || n.LANIP != rec.LANIP
		n.PublicIP, n.Port, n.NATPort, n.LANIP, n.LastSeen = rec.PublicIP, rec.Port, rec.NATPort, rec.LANIP, rec.LastSeen
		n.savedSeen = rec.LastSeen
		n.dirty, n.urgent = false, false // the store holds newer news than this server
	}
	// It went down through another server (to the second, as stored; this
	// server's own DownAt is finer), or came back through another server
	// after a down this server learnt from the store. A down said here
	// ends only with a heartbeat (here, or one stored later: see saidDown).
	switch down := unixOrZero(rec.DownAt); {
	case down > unixOrZero(n.DownAt):
		n.DownAt, n.downStored = rec.DownAt, true
	case down == 0 && n.downStored && !n.Up:
		n.DownAt, n.downStored = time.Time{}, false
	}
	if online := n.fresh(now); online != n.online {
		r.setOnline(n, online)
		changed = true
	}
	return changed
}

// holders are the nodes other than n that hold one of its unique values.
// Callers hold r.mu.
func (r *registry) holders(n *node, addr netip.Addr) []*node {
	var out []*node
	add := func(o *node) {
		if o != nil && o != n && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	add(r.nodes[r.alloc.used[addr]])
	add(r.byName[strings.ToLower(n.NodeName)])
	add(r.byWG[n.WGPublicKey])
	if n.NodeKey != "" {
		add(r.byKey[n.NodeKey])
	}
	return out
}

// timeOrZero is the time of Unix seconds s, the zero time for 0.
func timeOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// unixOrZero is t in Unix seconds, 0 for the zero time.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
