package server

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

func newTestRegistry(t *testing.T) *registry {
	t.Helper()
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return newRegistry(store, netip.MustParsePrefix("10.99.0.0/16"), time.Now, nil)
}

func (s *Store) totalChanges(t *testing.T) int64 {
	var n int64
	if err := s.db.QueryRow(`SELECT total_changes()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Heartbeats stay in memory; the store sees them in one batch.
func TestHeartbeatsAreBatched(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	for i := range 5 {
		req := api.RegisterRequest{NodeID: fmt.Sprint("n", i), NodeName: fmt.Sprint("n", i), WGPublicKey: fmt.Sprint("k", i), Port: 51820}
		if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
			t.Fatal(err)
		}
	}
	before := reg.store.totalChanges(t)
	for range 100 {
		for i := range 5 {
			req := api.RegisterRequest{NodeID: fmt.Sprint("n", i), NodeName: fmt.Sprint("n", i), WGPublicKey: fmt.Sprint("k", i), Port: 51820}
			if _, err := reg.register(ctx, enrolment{req: req, publicIP: "198.51.100.1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := reg.store.totalChanges(t) - before; got != 0 {
		t.Fatalf("500 heartbeats made %d row writes, want 0 before the batch", got)
	}
	dirty := reg.takeSeen(false)
	if err := reg.store.SaveSeen(ctx, dirty); err != nil {
		t.Fatal(err)
	}
	if got := reg.store.totalChanges(t) - before; got != 6 {
		t.Fatalf("the batch wrote %d rows, want 6 (one per node, and the revision)", got)
	}
	recs, _ := reg.store.Nodes(ctx)
	if recs[0].PublicIP != "198.51.100.1" {
		t.Errorf("stored public_ip = %q after the batch", recs[0].PublicIP)
	}
}

// A node that stops sending heartbeats leaves the online set, and waiting
// long-polls learn it.
func TestSweepMarksOffline(t *testing.T) {
	reg := newTestRegistry(t)
	now := time.Now()
	reg.now = func() time.Time { return now }
	req := api.RegisterRequest{NodeID: "a", NodeName: "a", WGPublicKey: "k", Port: 1}
	if _, err := reg.register(context.Background(), enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	full, _ := reg.peers("0", "")
	_, wait := reg.peers(full.Version, "")
	now = now.Add(api.Online)
	reg.sweep()
	select {
	case <-wait:
	default:
		t.Fatal("sweep did not wake the long-poll")
	}
	delta, _ := reg.peers(full.Version, "")
	if len(delta.Peers) != 0 || len(delta.Removed) != 1 || delta.Removed[0] != "a" {
		t.Errorf("delta after going offline = %+v", delta)
	}
	if st := reg.status("v", ""); st.Offline != 1 || st.Nodes[0].Status != "offline" {
		t.Errorf("status = %+v", st)
	}
	now = now.Add(api.Listed)
	if st := reg.status("v", ""); st.Total != 0 {
		t.Errorf("a node silent for over 24h is still listed: %+v", st)
	}
}

// After the change log is compacted, a node that missed many changes of
// one peer still gets a delta (its latest state), not the whole map.
func TestChangeLogCompaction(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	req := api.RegisterRequest{NodeID: "a", NodeName: "a", WGPublicKey: "k", Port: 1}
	reg.register(ctx, enrolment{req: req})
	old, _ := reg.peers("0", "")
	for i := range 3000 {
		req.NATPort = i + 1
		reg.register(ctx, enrolment{req: req})
	}
	if len(reg.log) > 4*len(reg.nodes)+1024 {
		t.Fatalf("log has %d entries for %d node: not compacted", len(reg.log), len(reg.nodes))
	}
	if resp, _ := reg.peers(old.Version, ""); resp.Full || len(resp.Peers) != 1 || resp.Peers[0].NATPort != 3000 {
		t.Errorf("from a compacted version: %+v, want a delta of a's latest state", resp)
	}
}

// Removals are remembered until there are more than maxTombstones: a
// version from before a forgotten removal gets the whole map, one after
// it a delta that names the removals it missed.
func TestChangeLogForgetsOldRemovals(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	old, _ := reg.peers("0", "")
	var middle string
	for i := range 3000 {
		id := fmt.Sprint("n", i)
		req := api.RegisterRequest{NodeID: id, NodeName: id, WGPublicKey: "k" + id, Port: 1}
		if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.store.RemoveNode(ctx, id); err != nil {
			t.Fatal(err)
		}
		reg.mu.Lock()
		reg.remove(reg.nodes[id])
		reg.mu.Unlock()
		if i == 2900 {
			resp, _ := reg.peers("0", "")
			middle = resp.Version
		}
	}
	if resp, _ := reg.peers(old.Version, ""); !resp.Full {
		t.Errorf("from before forgotten removals: %d removed, not a full answer", len(resp.Removed))
	}
	if resp, _ := reg.peers(middle, ""); resp.Full || len(resp.Removed) != 99 {
		t.Errorf("from a recent version: full %v, %d removed; want a delta of 99 removals", resp.Full, len(resp.Removed))
	}
}

// A reload may run on a read of the store that began before a node's
// enrolment was written: that node must stay, and the reload must be
// repeated; a node the read did hold, and the admin then removed, goes.
func TestReloadKeepsNodesAddedDuringTheRead(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	enrolNode := func(name string) record {
		t.Helper()
		rec, err := reg.register(ctx, enrolment{req: api.RegisterRequest{NodeID: name, NodeName: name, WGPublicKey: "k" + name, Port: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	a := enrolNode("a")
	if _, err := reg.store.RemoveNode(ctx, "a"); err != nil { // the admin's change
		t.Fatal(err)
	}
	mark := reg.mark()
	snapshot, err := reg.store.Nodes(ctx) // watch reads the store
	if err != nil {
		t.Fatal(err)
	}
	late := enrolNode("late") // enrols between the read and the reload

	gone, again := reg.reload(snapshot, mark)
	if _, ok := reg.nodes["late"]; !ok || !again {
		t.Fatalf("reload dropped a node that enrolled during its read (again = %v)", again)
	}
	if len(gone) != 1 || gone[0].String() != a.VPNIP {
		t.Errorf("gone = %v, want a's %s", gone, a.VPNIP)
	}
	// The repeated reload, on a newer read, keeps late and is done.
	mark = reg.mark()
	snapshot, _ = reg.store.Nodes(ctx)
	if gone, again := reg.reload(snapshot, mark); len(gone) != 0 || again {
		t.Errorf("second reload: gone %v, again %v", gone, again)
	}
	if _, ok := reg.nodes["late"]; !ok {
		t.Error("late is gone after the second reload")
	}
	// late's address is still taken: the next node gets another.
	if next := enrolNode("next"); next.VPNIP == late.VPNIP {
		t.Errorf("late's address %s was handed out again", late.VPNIP)
	}
}

// A node that long-polls is online without heartbeats: its last-seen time
// moves on, it reaches the store once a minute at most, and a node marked
// offline comes back online with its first poll.
func TestPollIsSignOfLife(t *testing.T) {
	reg := newTestRegistry(t)
	now := time.Now()
	reg.now = func() time.Time { return now }
	ctx := context.Background()
	req := api.RegisterRequest{NodeID: "n1", NodeName: "n1", WGPublicKey: "k1", Port: 51820}
	if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	n := reg.nodes["n1"]
	reg.takeSeen(false)
	for range 20 { // 20 polls over 8 minutes, no heartbeat
		now = now.Add(25 * time.Second)
		reg.alive(n)
		reg.sweep()
		if !n.online {
			t.Fatalf("offline %v after its last heartbeat, though it polls", now.Sub(n.Created))
		}
	}
	if got := len(reg.takeSeen(false)); got != 1 {
		t.Errorf("%d rows to write after the polls, want 1", got)
	}
	now = now.Add(25 * time.Second)
	reg.alive(n)
	if got := len(reg.takeSeen(false)); got != 0 {
		t.Errorf("a poll 25 s after the last write made %d rows to write, want none", got)
	}

	// Silent beyond api.Online: offline; one poll: online again, as a
	// change peers see.
	now = now.Add(api.Online)
	reg.sweep()
	if n.online {
		t.Fatal("online after api.Online without polls or heartbeats")
	}
	before := reg.version
	reg.alive(n)
	if !n.online || reg.version == before {
		t.Errorf("after a poll: online %v, version %d (was %d)", n.online, reg.version, before)
	}
}

// A node that said it goes down stays offline when its own last heartbeat
// comes back from the store (a batch written, then read as a change).
func TestOfflineSurvivesReadBack(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	req := api.RegisterRequest{NodeID: "n1", NodeName: "n1", WGPublicKey: "k1", Port: 51820}
	if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.register(ctx, enrolment{req: req, publicIP: "198.51.100.7"}); err != nil { // a heartbeat: dirty
		t.Fatal(err)
	}
	n := reg.nodes["n1"]
	if _, _, err := reg.offline(n); err != nil {
		t.Fatal(err)
	}
	if err := reg.store.SaveSeen(ctx, reg.takeSeen(false)); err != nil {
		t.Fatal(err)
	}
	recs, removed, _, err := reg.store.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	reg.apply(recs, removed, reg.mark())
	if n.online {
		t.Error("the node is online again after its own heartbeat was read back from the store")
	}
}

// A removal read while a registration of the node is writing is not
// applied, and the read says it must be done again with every node, so
// that the removal is not lost.
func TestApplyLeavesBusyNodes(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	req := api.RegisterRequest{NodeID: "n1", NodeName: "n1", WGPublicKey: "k1", Port: 51820}
	if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	mark := reg.mark()
	if _, err := reg.store.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	recs, removed, _, err := reg.store.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	res := reg.reserve("n1", reg.nodes["n1"].record) // a rename of n1 in flight
	reg.mu.Unlock()
	if _, consistent := reg.apply(recs, removed, mark); consistent {
		t.Error("apply skipped a busy node's removal and said the read was complete")
	}
	if _, ok := reg.nodes["n1"]; !ok {
		t.Error("a node whose registration was writing was removed under it")
	}
	reg.mu.Lock()
	reg.unreserve(res)
	reg.mu.Unlock()
	// Read again, with every node, as sync does then: it goes.
	mark = reg.mark()
	all, _ := reg.store.Nodes(ctx)
	if gone, _ := reg.reload(all, mark); len(gone) != 1 {
		t.Errorf("the full read removed %d nodes, want 1", len(gone))
	}
}

// A poll that reaches the server after the node said it goes down (it was
// on its way) does not bring the node back; its next heartbeat does.
func TestPollAfterDownKeepsItDown(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	req := api.RegisterRequest{NodeID: "n1", NodeName: "n1", WGPublicKey: "k1", Port: 51820}
	if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	n := reg.nodes["n1"]
	if _, _, err := reg.offline(n); err != nil {
		t.Fatal(err)
	}
	reg.alive(n)
	if n.online {
		t.Fatal("a poll after wire down brought the node back online")
	}
	if _, err := reg.register(ctx, enrolment{req: req}); err != nil {
		t.Fatal(err)
	}
	if !n.online {
		t.Error("the heartbeat after wire down did not bring the node back")
	}
	reg.alive(n)
	if !n.online {
		t.Error("offline after a poll that followed its heartbeat")
	}
}

// An address found taken by another server's node that this one never
// learns of (removed before this server read it) is free again once a
// read of the store's changes that began after it was found is applied;
// one found during that read is kept until the next.
func TestAddressTakenElsewhereIsFreedAfterARead(t *testing.T) {
	reg := newTestRegistry(t)
	before, during := netip.MustParseAddr("10.99.0.7"), netip.MustParseAddr("10.99.0.8")
	reg.mu.Lock()
	reg.alloc.takenElsewhere(before, reg.commits)
	reg.mu.Unlock()
	mark := reg.mark() // a read begins
	reg.mu.Lock()
	reg.alloc.takenElsewhere(during, reg.commits)
	reg.mu.Unlock()
	if _, consistent := reg.apply(nil, nil, mark); !consistent {
		t.Fatal("an empty read was not consistent")
	}
	reg.mu.Lock()
	_, stillBefore := reg.alloc.used[before]
	_, stillDuring := reg.alloc.used[during]
	reg.mu.Unlock()
	if stillBefore {
		t.Errorf("%s, found taken before the read began, is still held after it", before)
	}
	if !stillDuring {
		t.Errorf("%s, found taken while the read ran, was freed by it", during)
	}
	reg.apply(nil, nil, reg.mark())
	if _, ok := reg.alloc.used[during]; ok {
		t.Errorf("%s is still held after the next read", during)
	}
}
