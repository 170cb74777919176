//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/api"
)

// got is what the scanner took from an answer, comparable with cmp.
type got struct {
	Seen    []int
	Removed []int
	Version string
	Full    bool
	Watched bool
}

func scanned(t *testing.T, resp api.PeersResponse, n int, w watch, bufSize int) (got, error) {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(resp); err != nil { // as the server writes it
		t.Fatal(err)
	}
	a := newAnswer(n)
	a.reset(w)
	err := a.read(bufio.NewReaderSize(&b, bufSize))
	g := got{Removed: a.removed, Version: string(a.version), Full: a.full, Watched: a.watched}
	for i := range n {
		if a.seen.has(i) {
			g.Seen = append(g.Seen, i)
		}
	}
	return g, err
}

func simPeer(i, natPort int) api.Peer {
	return api.Peer{
		NodeID: nodeID(i), NodeName: nodeID(i), VPNIP: "10.99.1.2", WGPublicKey: strings.Repeat("A", 43) + "=",
		PublicIP: "127.1.0.1", Port: 51820, NATPort: natPort, NodeKey: strings.Repeat("b", 52),
	}
}

func withLAN(p api.Peer) api.Peer {
	p.LANIP = "192.168.1.10"
	return p
}

func TestAnswerRead(t *testing.T) {
	const n = 5000
	var many []api.Peer
	var manyIDs, removed []int
	var removedIDs []string
	for i := range 3000 {
		many = append(many, simPeer(i, 51820))
		manyIDs = append(manyIDs, i)
	}
	for i := 3000; i < n; i++ { // a removed list longer than the buffer
		removed = append(removed, i)
		removedIDs = append(removedIDs, nodeID(i))
	}
	for _, tc := range []struct {
		name string
		resp api.PeersResponse
		w    watch
		want got
	}{
		{"empty delta", api.PeersResponse{Peers: []api.Peer{}, Version: "ab12cd34.7"}, watch{-1, 0},
			got{Version: "ab12cd34.7"}},
		{"full", api.PeersResponse{Peers: many, Version: "ab12cd34.3000", Full: true}, watch{2999, 51820},
			got{Seen: manyIDs, Version: "ab12cd34.3000", Full: true, Watched: true}},
		{"watched peer, other port", api.PeersResponse{Peers: []api.Peer{simPeer(7, 40001), simPeer(8, 40002)}, Version: "e.9"}, watch{7, 40002},
			got{Seen: []int{7, 8}, Version: "e.9"}},
		{"watched peer, its port", api.PeersResponse{Peers: []api.Peer{simPeer(7, 40001), simPeer(8, 40002)}, Version: "e.9"}, watch{8, 40002},
			got{Seen: []int{7, 8}, Version: "e.9", Watched: true}},
		{"removals", api.PeersResponse{Peers: []api.Peer{simPeer(1, 1)}, Version: "e.10", Removed: removedIDs}, watch{-1, 0},
			got{Seen: []int{1}, Removed: removed, Version: "e.10"}},
		{"peers with a lan_ip", api.PeersResponse{Peers: []api.Peer{withLAN(simPeer(3, 40003))}, Version: "e.12"}, watch{3, 40003},
			got{Seen: []int{3}, Version: "e.12", Watched: true}},
		{"full and removals", api.PeersResponse{Peers: []api.Peer{}, Version: "e.11", Full: true, Removed: []string{nodeID(4)}}, watch{-1, 0},
			got{Removed: []int{4}, Version: "e.11", Full: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := scanned(t, tc.resp, n, tc.w, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("scanned (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswerReadRefuses(t *testing.T) {
	filtered := simPeer(1, 1)
	filtered.Filter = &api.PeerFilter{Accept: []string{"tcp:22"}}
	stranger := simPeer(1, 1)
	stranger.NodeID = "laptop"
	for _, tc := range []struct {
		name string
		resp api.PeersResponse
	}{
		{"policy filter", api.PeersResponse{Peers: []api.Peer{filtered}, Version: "e.1"}},
		{"not a simulated node", api.PeersResponse{Peers: []api.Peer{stranger}, Version: "e.1"}},
		{"node beyond n", api.PeersResponse{Peers: []api.Peer{simPeer(10, 1)}, Version: "e.1"}},
		{"no version", api.PeersResponse{Peers: []api.Peer{simPeer(1, 1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if g, err := scanned(t, tc.resp, 10, watch{-1, 0}, 4096); err == nil {
				t.Errorf("no error; scanned %+v", g)
			}
		})
	}
}

func TestAnswerReadTruncated(t *testing.T) {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(api.PeersResponse{Peers: []api.Peer{simPeer(1, 1), simPeer(2, 2)}, Version: "e.2", Removed: []string{nodeID(3)}})
	full := b.Bytes()
	for cut := range len(full) - 1 { // every proper prefix but the one without the newline
		a := newAnswer(10)
		a.reset(watch{-1, 0})
		if err := a.read(bufio.NewReader(bytes.NewReader(full[:cut]))); err == nil {
			t.Errorf("answer cut at %d of %d (%q): no error", cut, len(full), full[max(0, cut-10):cut])
		}
	}
}
