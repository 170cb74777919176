package server

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wire-mesh/wire/internal/scrape"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/stun"
)

// Prometheus metrics (Config.MetricsListen). Most are read from counters
// the server keeps anyway, when scraped; what is measured for metrics
// alone (requests, propagation, store writes) costs a few atomic adds.

// metrics holds the server's metrics that are observed as they happen.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec // by route and status code
	refusals    *prometheus.CounterVec // registrations refused, by reason
	propagation prometheus.Histogram
	storeWrites prometheus.Histogram
	polls       atomic.Int64 // long-polls waiting now
}

func newMetrics() *metrics {
	m := &metrics{
		reg: scrape.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wire_server_http_requests_total", Help: "HTTP API requests answered, by route and status code.",
		}, []string{"route", "code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wire_server_registrations_refused_total", Help: "Enrolments and heartbeats refused, by reason.",
		}, []string{"reason"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wire_server_change_propagation_seconds",
			Help:    "From a change to the mesh to a waiting long-poll's answer that carries it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		storeWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wire_server_store_write_seconds",
			Help:    "Store transactions that change the mesh, commit included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
	}
	m.reg.MustRegister(m.requests, m.refusals, m.propagation, m.storeWrites)
	return m
}

// register adds the metrics read from the server's own counters.
func (m *metrics) register(s *Server) {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	total := func() float64 { t, _ := s.reg.count(); return float64(t) }
	online := func() float64 { _, o := s.reg.count(); return float64(o) }
	stunStat := func(f func(stun.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(s.stun.Stats())) }
	}
	relayStat := func(f func(relay.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(s.relay.Stats())) }
	}
	m.reg.MustRegister(
		gauge("wire_server_nodes", "Enrolled nodes.", total),
		gauge("wire_server_nodes_online", "Enrolled nodes online: heard from within 5 minutes, not gone down, not expired.", online),
		counter("wire_server_enrolments_total", "New nodes enrolled through this server.", func() float64 { return float64(s.reg.counts.enrolled.Load()) }),
		counter("wire_server_heartbeats_total", "Heartbeats of enrolled nodes answered.", func() float64 { return float64(s.reg.counts.heartbeats.Load()) }),
		gauge("wire_server_long_polls", "Long-polls (GET /peers) waiting for a change.", func() float64 { return float64(m.polls.Load()) }),
		counter("wire_server_full_answers_shed_total", "Polls told to come back later (503, Retry-After): too many full answers were being written.", func() float64 { return float64(s.stats.shedFull.Load()) }),
		counter("wire_server_panics_recovered_total", "Handler panics recovered.", func() float64 { return float64(s.stats.panics.Load()) }),
		counter("wire_server_tls_handshake_errors_total", "TLS handshakes that failed.", func() float64 { return float64(s.stats.tlsErrors.Load()) }),
		gauge("wire_server_connections", "HTTP connections open.", func() float64 { return float64(s.conns.Stats().Open) }),
		counter("wire_server_stun_requests_total", "Datagrams received on the STUN port.", stunStat(func(st stun.Stats) uint64 { return st.Requests })),
		counter("wire_server_stun_replies_total", "STUN answers sent.", stunStat(func(st stun.Stats) uint64 { return st.Replies })),
		gauge("wire_server_relay_bindings", "Nodes bound to the relay now.", func() float64 { return float64(len(s.relay.Nodes())) }),
		gauge("wire_server_relay_streams", "Relay streams open now: nodes on the relay over TCP, their UDP blocked.", func() float64 { return float64(s.relay.Stats().Streams) }),
		counter("wire_server_relay_packets_total", "Datagrams forwarded by the relay.", relayStat(func(st relay.Stats) uint64 { return st.Forwarded })),
		counter("wire_server_relay_bytes_total", "Bytes forwarded by the relay, its headers included.", relayStat(func(st relay.Stats) uint64 { return st.ForwardedBytes })),
		counter("wire_server_relay_stun_answers_total", "STUN Binding requests answered on the relay's port (wire netcheck).", relayStat(func(st relay.Stats) uint64 { return st.STUN })),
		newDropCollector(s),
	)
}

// dropCollector reports the STUN server's and the relay's dropped
// datagrams, by reason, from their counters.
type dropCollector struct {
	s          *Server
	stun, rlay *prometheus.Desc
}

func newDropCollector(s *Server) *dropCollector {
	return &dropCollector{s: s,
		stun: prometheus.NewDesc("wire_server_stun_dropped_total", "Datagrams the STUN port did not answer, by reason.", []string{"reason"}, nil),
		rlay: prometheus.NewDesc("wire_server_relay_dropped_total", "Datagrams the relay dropped, by reason.", []string{"reason"}, nil),
	}
}

func (c *dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.stun; ch <- c.rlay }

func (c *dropCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.stun.Stats()
	for reason, n := range map[string]uint64{"malformed": st.Malformed, "undersized": st.Undersized, "rate_limited": st.RateLimited} {
		ch <- prometheus.MustNewConstMetric(c.stun, prometheus.CounterValue, float64(n), reason)
	}
	rs := c.s.relay.Stats()
	for reason, n := range map[string]uint64{
		"malformed": rs.Malformed, "unbound": rs.Unbound, "no_route": rs.NoRoute, "rate_limited": rs.RateLimited,
		"hello_refused": rs.HellosBad, "mesh_unauthenticated": rs.MeshBad, "mesh_missed": rs.MeshMissed,
	} {
		ch <- prometheus.MustNewConstMetric(c.rlay, prometheus.CounterValue, float64(n), reason)
	}
}

// observeRequest counts one answered request.
func (m *metrics) observeRequest(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// refused counts a registration refused for reason.
func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// statusWriter remembers the status code of the answer it writes.
type statusWriter struct {
	http.ResponseWriter
	code int
}

// Hijack takes the connection over (for the relay stream), which counts
// as 101 Switching Protocols.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
