package server_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// call does a plain HTTP request and decodes the JSON answer generically,
// so the test sees exactly the fields the server sent.
func call(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not JSON: %s", method, url, b)
	}
	return resp.StatusCode, m
}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestOpenModeSeedShapes(t *testing.T) {
	env := servertest.Start(t, "", servertest.Open)
	base := env.URL()
	if !strings.HasPrefix(base, "http://") {
		t.Fatalf("open server URL %s, want plain http", base)
	}
	wg := servertest.NewNode(t).WGKey
	// The seed's client sends exactly these fields, and nothing else.
	body := `{"node_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90","node_name":"node1","wg_public_key":"` + wg + `","port":51820,"nat_port":54321,"lan_ip":"10.0.0.2"}`
	code, reg := call(t, "POST", base+"/register", body)
	if code != 200 || !cmp.Equal(keys(reg), []string{"ok", "vpn_ip", "your_ip"}) {
		t.Fatalf("register: %d %v; want the seed's {ok, vpn_ip, your_ip}", code, reg)
	}
	// The seed's deterministic address: 10.99.<hash[0]>.<hash[1]>.
	if reg["vpn_ip"] != "10.99.161.178" {
		t.Errorf("vpn_ip = %v, want 10.99.161.178 (0xa1, 0xb2 of the node_id)", reg["vpn_ip"])
	}
	_, st := call(t, "GET", base+"/status", "")
	if !cmp.Equal(keys(st), []string{"nodes", "offline", "online", "total", "version"}) {
		t.Errorf("status keys = %v", keys(st))
	}
	node := st["nodes"].([]any)[0].(map[string]any)
	if !cmp.Equal(keys(node), []string{"last_seen_ago", "nat_port", "node_name", "public_ip", "status", "vpn_ip"}) {
		t.Errorf("status node keys = %v", keys(node))
	}
	_, peers := call(t, "GET", base+"/peers", "")
	if !cmp.Equal(keys(peers), []string{"peers"}) || len(peers["peers"].([]any)) != 1 {
		t.Errorf("peers = %v", peers)
	}
	_, h := call(t, "GET", base+"/health", "")
	if !cmp.Equal(keys(h), []string{"ok", "online", "total", "version"}) {
		t.Errorf("health = %v", h)
	}
	_, punch := call(t, "POST", base+"/punch", `{"from_vpn_ip":"10.99.1.1","to_vpn_ip":"10.99.161.178"}`)
	if !cmp.Equal(keys(punch), []string{"attempts", "ok", "use_relay"}) {
		t.Errorf("punch = %v", punch)
	}
	// Seed clients may send fields this server does not know.
	if code, _ := call(t, "POST", base+"/register", strings.TrimSuffix(body, "}")+`,"extra":1}`); code != 200 {
		t.Errorf("open mode refused an unknown field: %d", code)
	}
}

func TestSeedImport(t *testing.T) {
	wg1, wg2 := servertest.NewNode(t).WGKey, servertest.NewNode(t).WGKey
	state := `{"nodes": {
		"aaaa0000aaaa0000aaaa0000aaaa0000": {"node_name": "old1", "vpn_ip": "10.99.23.187", "wg_public_key": "` + wg1 + `", "public_ip": "203.0.113.10", "nat_port": 51820, "last_seen": 1700000000.5},
		"bbbb0000bbbb0000bbbb0000bbbb0000": {"node_name": "old2", "vpn_ip": "10.99.45.22", "wg_public_key": "` + wg2 + `", "port": 51820}
	}}`
	file := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(file, []byte(state), 0o600)
	dir := t.TempDir()
	withSeed := func(c *server.Config) { c.SeedStateFile = file }
	env := servertest.Start(t, dir, withSeed)
	env.Stop()
	store, err := server.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := store.List(ctx, time.Now())
	store.Close()
	got := map[string]string{}
	for _, n := range list {
		got[n.NodeName] = n.VPNIP
	}
	if diff := cmp.Diff(map[string]string{"old1": "10.99.23.187", "old2": "10.99.45.22"}, got); diff != "" {
		t.Errorf("imported nodes (-want +got):\n%s", diff)
	}
	// Importing again (a restart with the same WIRE_STATE_FILE) adds nothing.
	servertest.Start(t, dir, withSeed).Stop()
	// Whoever holds a join key and knows an imported node's node_id, but
	// not its WireGuard key, cannot claim it: the mesh would send that
	// node's traffic to another machine.
	env = servertest.Start(t, dir)
	k := env.Key(t, true)
	mallory := servertest.NewNode(t)
	req := register("mallory", mallory, &k)
	req.NodeID = "aaaa0000aaaa0000aaaa0000aaaa0000"
	if _, err := env.Client(t, &mallory).Register(ctx, req); statusCode(err) != http.StatusForbidden || !contains(err, "another WireGuard key") {
		t.Errorf("claim with another WireGuard key: err = %v, want 403 that says why", err)
	}
	// The node itself, with its WireGuard key, claims its record with a
	// join key, keeping its name and address.
	n := servertest.NewNode(t)
	n.WGKey = wg1
	req = register("old1", n, &k)
	req.NodeID = "aaaa0000aaaa0000aaaa0000aaaa0000"
	resp, err := env.Client(t, &n).Register(ctx, req)
	if err != nil || resp.VPNIP != "10.99.23.187" {
		t.Errorf("claim imported node: %+v, %v", resp, err)
	}
	st, err := env.Admin(t).Status(ctx)
	if err != nil || len(st.Nodes) != 1 || st.Nodes[0].NodeName != "old1" {
		t.Errorf("after the claims: %+v, %v; want old1 alone (old2 was last seen long ago)", st, err)
	}
}

func TestTrustedProxy(t *testing.T) {
	plain := servertest.Start(t, "", servertest.Open)
	if _, m := call(t, "GET", plain.URL()+"/ip", "", "X-Forwarded-For", "198.51.100.7"); m["ip"] != "127.0.0.1" {
		t.Errorf("untrusted X-Forwarded-For was believed: %v", m)
	}
	proxied := servertest.Start(t, "", servertest.Open, func(c *server.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	if _, m := call(t, "GET", proxied.URL()+"/ip", "", "X-Forwarded-For", "203.0.113.9, 198.51.100.7"); m["ip"] != "198.51.100.7" {
		t.Errorf("trusted proxy: ip = %v, want the last hop 198.51.100.7", m)
	}
}

// A seed node's registrations may overlap (a retry, a restart): the first
// enrols it, the others are its heartbeats, never an error.
func TestOpenModeConcurrentRegistrations(t *testing.T) {
	env := servertest.Start(t, "", servertest.Open)
	body := `{"node_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90","node_name":"node1","wg_public_key":"` + servertest.NewNode(t).WGKey + `","port":51820}`
	codes := make(chan int, 20)
	for range 20 {
		go func() {
			code, _ := call(t, "POST", env.URL()+"/register", body)
			codes <- code
		}()
	}
	for range 20 {
		if code := <-codes; code != 200 {
			t.Errorf("a concurrent registration got %d", code)
		}
	}
	if _, st := call(t, "GET", env.URL()+"/status", ""); st["total"] != 1.0 {
		t.Errorf("status = %v, want one node", st)
	}
}
