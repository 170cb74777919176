package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/scrape/scrapetest"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// The server's metrics, scraped and parsed as Prometheus does: nodes,
// enrolments and refusals by reason, heartbeats, requests by route and
// code, a change's propagation to a waiting long-poll, store writes, and
// the STUN and relay counters.
func TestServerMetrics(t *testing.T) {
	env := servertest.Start(t, "", func(c *server.Config) { c.MetricsListen = "127.0.0.1:0" })
	url := fmt.Sprintf("http://%s/metrics", env.MetricsAddr())
	_, c, _ := enrol(t, env, "a")
	full, err := c.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}
	polled := make(chan error, 1)
	go func() { _, err := c.Peers(ctx, full.Version, 5*time.Second); polled <- err }()
	time.Sleep(100 * time.Millisecond)
	if got := scrapeAt(t, url).Value("wire_server_long_polls"); got != 1 {
		t.Errorf("wire_server_long_polls = %v while one waits, want 1", got)
	}
	enrol(t, env, "b") // the change the poll waits for
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	used := env.Key(t, false)
	n := servertest.NewNode(t)
	nc := env.Client(t, &n)
	nc.Register(ctx, register("c", n, &used))
	m := servertest.NewNode(t)
	if _, err := env.Client(t, &m).Register(ctx, register("d", m, &used)); statusCode(err) != 401 {
		t.Fatalf("a used key: %v", err)
	}
	c.Register(ctx, register("a", servertest.Node{WGKey: "not a key"}, nil))

	f, body := scrapetest.Scrape(t, url)
	scrapetest.Promtool(t, body)
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"wire_server_nodes", nil, 3},
		{"wire_server_nodes_online", nil, 3},
		{"wire_server_enrolments_total", nil, 3},
		{"wire_server_registrations_refused_total", []string{"reason", "key_used"}, 1},
		{"wire_server_registrations_refused_total", []string{"reason", "bad_request"}, 1},
		{"wire_server_change_propagation_seconds", nil, 1},
		{"wire_server_long_polls", nil, 0},
		{"wire_server_http_requests_total", []string{"route", api.PathPeers, "code", "200"}, 2},
		{"wire_server_http_requests_total", []string{"route", api.PathRegister, "code", "401"}, 1},
	} {
		if got := f.Value(want.name, want.labels...); got != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}
	for _, name := range []string{"wire_server_store_write_seconds", "wire_server_stun_requests_total", "wire_server_relay_packets_total",
		"wire_server_relay_dropped_total", "wire_server_stun_dropped_total", "wire_server_relay_bindings", "wire_server_relay_streams", "wire_server_panics_recovered_total",
		"wire_server_heartbeats_total", "go_goroutines", "process_resident_memory_bytes"} {
		if f.Value(name) < 0 {
			t.Errorf("no %s", name)
		}
	}
	if got := f.Value("wire_server_store_write_seconds"); got < 3 {
		t.Errorf("store writes observed: %v, want at least the 3 enrolments", got)
	}
}

func scrapeAt(t *testing.T, url string) scrapetest.Families {
	f, _ := scrapetest.Scrape(t, url)
	return f
}
