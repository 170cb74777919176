package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Path selection. Every probeEvery the daemon probes each peer's direct
// endpoint from its WireGuard port (both sides do, which also opens both
// NATs towards each other). A peer goes to the relay after relayAfter
// failed probes in a row (reported to /punch, as the seed counted), and
// back to direct at the first probe that is answered: a relayed pair moves
// to direct as soon as hole punching works, and back if it stops working.
var (
	probeEvery   = 2 * time.Second // a variable for tests
	probeTimeout = 1500 * time.Millisecond
)

const relayAfter = 3

// probeBudget is how many peers one round probes at most. A mesh of up to
// that many is probed whole every round, as before; in a larger one, the
// peers whose path is undecided (new, failing, relayed) come first, and
// the rest of the budget goes to the settled direct peers probed longest
// ago. At 10,000 peers, probing all every 2 s would be 5,000 probes a
// second from every node; budgeted, it is 128, and a settled peer is
// looked at again about every 80 s, while WireGuard's own keepalives hold
// its NAT mappings open meanwhile.
const probeBudget = 256

// An engine that cannot probe (kernel WireGuard without raw sockets) is judged
// by handshakes instead: a peer with no handshake for noHandshake after it
// was configured goes to the relay, and stays there until its direct
// endpoint changes (nothing can tell that the old one started working).
var noHandshake = 15 * time.Second // a variable for tests

// path is what the daemon knows of the direct path to one peer.
type path struct {
	direct   netip.AddrPort // the direct endpoint this state is about
	since    time.Time      // when that endpoint was first seen
	fails    int            // failed probes in a row
	failing  time.Time      // the first of them
	lastErr  error          // the last of them
	punches  int            // failed attempts the server counts for the pair (api.PunchResponse.Attempts)
	lastOK   time.Time      // last answered probe
	probed   time.Time      // last probe, answered or not
	relayed  bool
	probeErr bool // the engine cannot probe (kernel, no raw sockets)
}

// why says why traffic to the peer goes through the relay, for wire
// status: what failed, since when, and how often.
func (pa *path) why() string {
	switch {
	case pa == nil || !pa.relayed:
		return ""
	case pa.probeErr:
		return fmt.Sprintf("no handshake over %v for %v after it was first tried (this engine cannot probe)", pa.direct, noHandshake)
	case pa.fails == 0:
		return ""
	}
	why := fmt.Sprintf("%d direct probes to %v unanswered since %s", pa.fails, pa.direct, pa.failing.Format(time.TimeOnly))
	if pa.lastErr != nil && !errors.Is(pa.lastErr, context.DeadlineExceeded) {
		why += " (" + pa.lastErr.Error() + ")"
	}
	if pa.punches > 0 {
		why += fmt.Sprintf("; %d punch attempts counted by the server", pa.punches)
	}
	return why
}

func (d *Daemon) choosePaths(ctx context.Context) {
	every(ctx, probeEvery, func() { d.probeAll(ctx) })
}

// probeAll probes every peer at once and applies the paths that changed.
func (d *Daemon) probeAll(ctx context.Context) {
	d.mu.Lock()
	peers := make([]api.Peer, 0, len(d.peers))
	for _, p := range d.peers {
		peers = append(peers, p)
	}
	peers = d.pickProbes(peers, probeBudget)
	d.mu.Unlock()
	live := d.live()
	var wg sync.WaitGroup
	changed := make(chan bool, len(peers))
	for _, p := range peers {
		var handshake time.Time
		if key, err := wgtypes.ParseKey(p.WGPublicKey); err == nil {
			handshake = live[key].LastHandshake
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			changed <- d.probe(ctx, p, handshake)
		}()
	}
	wg.Wait()
	close(changed)
	for c := range changed {
		if c {
			d.changed()
			return
		}
	}
}

// pickProbes chooses the peers a round probes: all of them if they fit the
// budget; else those the engine cannot probe (judged by handshakes, which
// costs nothing), then the undecided ones (new, failing, relayed), then
// the settled direct ones, each kind the one probed longest ago first, so
// that every peer's turn comes. Callers hold d.mu.
func (d *Daemon) pickProbes(peers []api.Peer, budget int) []api.Peer {
	if len(peers) <= budget {
		return peers
	}
	type rank struct {
		kind   int // 0 free, 1 undecided, 2 settled
		probed time.Time
	}
	rankOf := func(p api.Peer) rank {
		switch pa := d.paths[p.NodeID]; {
		case pa == nil:
			return rank{kind: 1}
		case pa.probeErr:
			return rank{0, pa.probed}
		case pa.relayed || pa.fails > 0 || pa.lastOK.IsZero():
			return rank{1, pa.probed}
		default:
			return rank{2, pa.probed}
		}
	}
	ranks := make(map[string]rank, len(peers))
	free := 0
	for _, p := range peers {
		r := rankOf(p)
		ranks[p.NodeID] = r
		if r.kind == 0 {
			free++
		}
	}
	slices.SortFunc(peers, func(a, b api.Peer) int {
		ra, rb := ranks[a.NodeID], ranks[b.NodeID]
		if c := ra.kind - rb.kind; c != 0 {
			return c
		}
		if c := ra.probed.Compare(rb.probed); c != 0 {
			return c
		}
		return strings.Compare(a.NodeID, b.NodeID)
	})
	return peers[:max(budget, free)]
}

// probe probes one peer's direct endpoint; it reports whether the peer's
// path changed.
func (d *Daemon) probe(ctx context.Context, p api.Peer, handshake time.Time) bool {
	d.mu.Lock()
	to := d.endpoint(p)
	d.mu.Unlock()
	if !to.IsValid() {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	_, err := d.engine.Probe(pctx, to)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	d.mu.Lock()
	pa := d.paths[p.NodeID]
	was := pa != nil && pa.relayed
	if pa == nil || pa.direct != to {
		pa = &path{direct: to, since: time.Now(), relayed: was && !pa.probeErr}
		d.paths[p.NodeID] = pa
	}
	pa.probed = time.Now()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		pa.probeErr = true
		silent := time.Since(pa.since) > noHandshake && time.Since(handshake) > Stale
		pa.relayed = pa.relayed || silent
	case err == nil:
		pa.fails, pa.lastOK, pa.relayed, pa.lastErr, pa.punches = 0, time.Now(), false, nil, 0
		d.metrics.probes.WithLabelValues("ok").Inc()
	default:
		d.metrics.probes.WithLabelValues("failed").Inc()
		if pa.fails == 0 {
			pa.failing = time.Now()
		}
		pa.fails++
		pa.lastErr = err
		// A pair where one side reaches the relay over TCP only has no UDP
		// to punch with: it takes the relay at the first failure.
		pa.relayed = pa.relayed || pa.fails >= relayAfter || p.RelayTCP || d.relay.overTCP()
	}
	report := err != nil && !pa.probeErr && pa.fails <= relayAfter
	now := pa.relayed
	if now != was {
		d.pathChanged(p.NodeID)
		d.heartbeatDue.Store(true) // the server's admin sees the pair's path with the next poll
	}
	d.mu.Unlock()
	if report {
		d.punch(ctx, p)
	}
	if now != was {
		d.log.Info("path changed", "peer", p.NodeName, "relay", now, "direct_endpoint", to)
		taken := PathDirect
		if now {
			taken = PathRelay
		}
		d.metrics.pathChanges.WithLabelValues(taken).Inc()
	}
	return now != was
}

// punch reports a failed direct attempt to the server's /punch accounting.
func (d *Daemon) punch(ctx context.Context, p api.Peer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := d.client.Punch(ctx, api.PunchRequest{FromVPNIP: d.cfg.VPNIP, ToVPNIP: p.VPNIP})
	if err != nil {
		return
	}
	d.mu.Lock()
	if pa := d.paths[p.NodeID]; pa != nil && pa.fails > 0 {
		pa.punches = resp.Attempts
	}
	d.mu.Unlock()
	if resp.UseRelay {
		d.log.Debug("server counts the direct attempts as failed", "peer", p.NodeName, "attempts", resp.Attempts)
	}
}

// relayedPeers are the node ids of the peers reached through the relay
// now, sorted, for the server's admin: the first api.MaxRelayed. Callers
// hold d.mu.
func (d *Daemon) relayedPeers() []string {
	var out []string
	for id, pa := range d.paths {
		if pa.relayed {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out[:min(len(out), api.MaxRelayed)]
}
