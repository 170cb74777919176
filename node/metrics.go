package node

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wire-mesh/wire/internal/scrape"
)

// Prometheus metrics of the daemon (Options.MetricsListen): its peers by
// path, each peer's bytes and last handshake (read from the engine when
// scraped), and what path choice and STUN did.

// metrics holds the daemon's metrics that are counted as they happen.
type metrics struct {
	reg          *prometheus.Registry
	pathChanges  *prometheus.CounterVec // by the path taken: direct or relay
	probes       *prometheus.CounterVec // by result: ok or failed
	rediscovered prometheus.Counter
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: scrape.NewRegistry(),
		pathChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wire_node_path_changes_total", Help: "Peers moved to another path, by the path they moved to.",
		}, []string{"path"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wire_node_probes_total", Help: "Probes of peers' direct endpoints, by result.",
		}, []string{"result"}),
		rediscovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wire_node_stun_mapping_changes_total", Help: "Times STUN found a new public mapping of the WireGuard port.",
		}),
	}
	m.reg.MustRegister(m.pathChanges, m.probes, m.rediscovered, &peerCollector{d: d})
	return m
}

// peerCollector reads the peers' state when scraped.
type peerCollector struct{ d *Daemon }

var (
	peersDesc     = prometheus.NewDesc("wire_node_peers", "Peers, by path: direct, relay, relay-tcp, idle or none.", []string{"path"}, nil)
	rxDesc        = prometheus.NewDesc("wire_node_peer_received_bytes_total", "Bytes received from each peer through its tunnel.", []string{"peer"}, nil)
	txDesc        = prometheus.NewDesc("wire_node_peer_sent_bytes_total", "Bytes sent to each peer through its tunnel.", []string{"peer"}, nil)
	handshakeDesc = prometheus.NewDesc("wire_node_peer_last_handshake_seconds", "Unix time of each peer's last WireGuard handshake (0: none).", []string{"peer"}, nil)
)

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peersDesc
	ch <- rxDesc
	ch <- txDesc
	ch <- handshakeDesc
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	byPath := map[string]int{PathDirect: 0, PathRelay: 0, PathRelayTCP: 0, PathIdle: 0, PathNone: 0}
	for _, p := range c.d.localPeers() {
		byPath[p.Path]++
		ch <- prometheus.MustNewConstMetric(rxDesc, prometheus.CounterValue, float64(p.RxBytes), p.NodeName)
		ch <- prometheus.MustNewConstMetric(txDesc, prometheus.CounterValue, float64(p.TxBytes), p.NodeName)
		var hs float64
		if p.LatestHandshake != nil {
			hs = float64(p.LatestHandshake.Unix())
		}
		ch <- prometheus.MustNewConstMetric(handshakeDesc, prometheus.GaugeValue, hs, p.NodeName)
	}
	for path, n := range byPath {
		ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(n), path)
	}
}

// serveMetrics serves the metrics until ctx ends, if asked to.
func (d *Daemon) serveMetrics(ctx context.Context) {
	if d.metricsLn == nil {
		return
	}
	if err := scrape.Serve(ctx, d.metricsLn, d.metrics.reg); err != nil && ctx.Err() == nil {
		d.log.Warn("serving metrics stopped", "err", err)
	}
}

// localPeers is every peer's status as this node knows it, without
// asking the server (for metrics, which a scrape must not make slow).
func (d *Daemon) localPeers() []PeerStatus {
	live := d.live()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]PeerStatus, 0, len(d.peers))
	for _, p := range d.peers {
		out = append(out, d.peerStatus(p, live))
	}
	return out
}
