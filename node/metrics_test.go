package node

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/internal/scrape/scrapetest"
	"github.com/wire-mesh/wire/server/servertest"
)

// A daemon with metrics_listen in its config serves its metrics there,
// parsed as Prometheus does: its peers by path, each peer's bytes and
// handshake, probes and path changes.
func TestNodeMetrics(t *testing.T) {
	probeEvery, probeTimeout = 100*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { probeEvery, probeTimeout = 2*time.Second, 1500*time.Millisecond })
	env := servertest.Start(t, "")
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	at := free.Addr().String()
	free.Close()
	dir := t.TempDir()
	k := env.Key(t, false)
	cfg, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: "a", Port: 51820, Interface: "wire-a", NodeID: "id-a"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MetricsListen = at
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, env, dir, "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	url := "http://" + at + "/metrics"
	awaitMetric(t, url, "wire_node_probes_total", "result", "ok")
	a.engine.Block(netip.MustParseAddrPort("127.0.0.1:40002"), true) // b goes to the relay
	f := awaitMetric(t, url, "wire_node_path_changes_total", "path", PathRelay)
	if got := f.Value("wire_node_path_changes_total", "path", PathRelay); got < 1 {
		t.Errorf("wire_node_path_changes_total{path=relay} = %v, want 1 once b moved to the relay", got)
	}
	if f.Value("wire_node_probes_total", "result", "ok") < 1 || f.Value("wire_node_probes_total", "result", "failed") < 1 {
		t.Errorf("probes: ok %v, failed %v; want some of each", f.Value("wire_node_probes_total", "result", "ok"), f.Value("wire_node_probes_total", "result", "failed"))
	}
	var peers float64
	for _, path := range []string{PathDirect, PathRelay, PathRelayTCP, PathIdle, PathNone} {
		if v := f.Value("wire_node_peers", "path", path); v >= 0 {
			peers += v
		} else {
			t.Errorf("no wire_node_peers{path=%q}", path)
		}
	}
	if peers != 1 {
		t.Errorf("wire_node_peers sums to %v, want 1", peers)
	}
	for _, name := range []string{"wire_node_peer_received_bytes_total", "wire_node_peer_sent_bytes_total", "wire_node_peer_last_handshake_seconds"} {
		if f.Value(name, "peer", "b") < 0 {
			t.Errorf("no %s{peer=b}", name)
		}
	}
	if f.Value("wire_node_stun_mapping_changes_total") < 0 || f.Value("process_resident_memory_bytes") < 0 {
		t.Error("no STUN mapping changes counter, or no process metrics")
	}
}

// awaitMetric scrapes url until name's metric with the label is at least
// 1, for at most 5 s, and returns the last scrape.
func awaitMetric(t *testing.T, url, name string, label ...string) scrapetest.Families {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, body := scrapetest.Scrape(t, url)
		if f.Value(name, label...) >= 1 || time.Now().After(deadline) {
			scrapetest.Promtool(t, body)
			return f
		}
		time.Sleep(50 * time.Millisecond)
	}
}
