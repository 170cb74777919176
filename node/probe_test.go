package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

// A round probes every peer of a mesh that fits the budget. In a larger
// one it probes the undecided peers first, then the settled ones probed
// longest ago, so that every peer's turn comes; peers the engine cannot
// probe cost nothing and are always looked at.
func TestProbeBudget(t *testing.T) {
	d := &Daemon{paths: map[string]*path{}}
	var peers []api.Peer
	for i := range 40 {
		peers = append(peers, api.Peer{NodeID: fmt.Sprintf("p%02d", i)})
	}
	if got := d.pickProbes(append([]api.Peer(nil), peers...), 40); len(got) != 40 {
		t.Fatalf("a mesh that fits the budget: %d probed, want all 40", len(got))
	}
	now := time.Now()
	for i, p := range peers {
		// p00-p29 settled, probed at now-i s: p29 longest ago; p30-p34
		// relayed; p35-p37 failing; p38 new (no path); p39 cannot be probed.
		pa := &path{lastOK: now, probed: now.Add(-time.Duration(i) * time.Second)}
		switch {
		case i >= 30 && i < 35:
			pa.relayed = true
		case i >= 35 && i < 38:
			pa.fails = 1
		case i == 39:
			pa.probeErr = true
		}
		if i != 38 {
			d.paths[p.NodeID] = pa
		}
	}
	got := d.pickProbes(append([]api.Peer(nil), peers...), 12)
	want := []string{"p39", "p38", "p37", "p36", "p35", "p34", "p33", "p32", "p31", "p30", "p29", "p28"}
	if len(got) != len(want) {
		t.Fatalf("%d probed, want %d", len(got), len(want))
	}
	for i, p := range got {
		if p.NodeID != want[i] {
			t.Fatalf("probed %v, want %v", ids(got), want)
		}
	}
	// Once probed, the settled peers that waited longest go next.
	for _, p := range got {
		if pa := d.paths[p.NodeID]; pa != nil {
			pa.probed, pa.relayed, pa.fails = now, false, 0
		}
	}
	d.paths["p38"] = &path{lastOK: now, probed: now}
	if next := d.pickProbes(append([]api.Peer(nil), peers...), 3); ids(next) != "[p39 p27 p26]" {
		t.Errorf("the next round probes %s, want [p39 p27 p26]", ids(next))
	}
}

func ids(ps []api.Peer) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.NodeID)
	}
	return fmt.Sprint(out)
}
