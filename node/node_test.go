package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

func TestEndpointChoice(t *testing.T) {
	d := &Daemon{publicIP: "203.0.113.11"}
	tests := []struct {
		name string
		peer api.Peer
		want string
	}{
		{"behind another NAT: public mapping", api.Peer{PublicIP: "203.0.113.12", NATPort: 40001, Port: 51820, LANIP: "192.168.2.10"}, "203.0.113.12:40001"},
		{"behind the same NAT: LAN address, no hairpin", api.Peer{PublicIP: "203.0.113.11", NATPort: 40002, Port: 51821, LANIP: "192.168.1.11"}, "192.168.1.11:51821"},
		{"same NAT but no LAN address known", api.Peer{PublicIP: "203.0.113.11", NATPort: 40002, Port: 51821}, "203.0.113.11:40002"},
		{"mapping unknown: listen port", api.Peer{PublicIP: "198.51.100.3", Port: 51820}, "198.51.100.3:51820"},
		{"no address at all", api.Peer{Port: 51820}, "invalid AddrPort"},
		{"same NAT, LAN address with a zone: not ours to use", api.Peer{PublicIP: "203.0.113.11", NATPort: 40002, Port: 51821, LANIP: "fe80::1%\x1b[2J"}, "203.0.113.11:40002"},
	}
	for _, tt := range tests {
		if got := d.endpoint(tt.peer).String(); got != tt.want {
			t.Errorf("%s: endpoint = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestJoinErrorsLeaveNoConfig(t *testing.T) {
	env := servertest.Start(t, "")
	good := env.Key(t, false)
	expired, _ := env.CreateKey(context.Background(), false, -1)
	tests := []struct {
		name      string
		url, key  string
		wantError string
	}{
		{"no key", env.URL(), "", "needs a join key"},
		{"malformed key", env.URL(), "letmein", "malformed join key"},
		{"expired key", env.URL(), expired.String(), "expired"},
		{"unreachable server", "https://127.0.0.1:1", good.String(), "cannot reach server"},
		{"bad URL", "vpn.example.com", good.String(), "want http(s)://"},
		{"key for another server", servertest.Start(t, "").URL(), good.String(), "does not match the pin"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		_, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: tt.url, JoinKey: tt.key, Name: "n1", Port: 51820, Interface: "wire0"})
		if err == nil || !strings.Contains(err.Error(), tt.wantError) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantError)
		}
		if _, err := os.Stat(filepath.Join(dir, ConfigFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: config.json was written", tt.name)
		}
	}
	// The good key works, and the saved config loads.
	dir := t.TempDir()
	cfg, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: good.String(), Name: "n1", Port: 51820, Interface: "wire0"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadConfig(dir)
	if err != nil || !reflect.DeepEqual(back, cfg) {
		t.Fatalf("LoadConfig = %+v, %v; want %+v", back, err, cfg)
	}
	if a, _ := cfg.Address(); a.Bits() != 16 || !netip.MustParsePrefix("10.99.0.0/16").Contains(a.Addr()) {
		t.Errorf("address %v", a)
	}
	fi, _ := os.Stat(filepath.Join(dir, PrivateKeyFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private.key mode %v, want 0600", fi.Mode())
	}
}

func TestDamagedConfig(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":     "{half",
		"missing vpn":  `{"server_url":"https://127.0.0.1:1","node_id":"x","node_name":"n","listen_port":1,"subnet":"10.99.0.0/16"}`,
		"bad pin":      `{"server_url":"https://127.0.0.1:1","server_pin":"zz","node_id":"x","node_name":"n","listen_port":1,"vpn_ip":"10.99.0.1","subnet":"10.99.0.0/16"}`,
		"outside vpn ": `{"server_url":"https://127.0.0.1:1","node_id":"x","node_name":"n","listen_port":1,"vpn_ip":"10.98.0.1","subnet":"10.99.0.0/16"}`,
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(content), 0o644)
		if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "join again") {
			t.Errorf("%s: err = %v, want a message saying to join again", name, err)
		}
	}
	if _, err := LoadConfig(t.TempDir()); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no config: %v", err)
	}
}

// A node_id names a node, not a host: two nodes on one host, each with its
// state dir, get two; the default state dir keeps the seed's hash.
func TestNodeIDPerStateDir(t *testing.T) {
	if got := NodeIDFor(RootDir); got != NodeID() {
		t.Errorf("NodeIDFor(%s) = %s, want the seed's %s", RootDir, got, NodeID())
	}
	a, b := t.TempDir(), t.TempDir()
	if NodeIDFor(a) == NodeIDFor(b) || NodeIDFor(a) != NodeIDFor(a) || NodeIDFor(a) == NodeID() {
		t.Errorf("NodeIDFor gives %s and %s for two dirs (%s for the host)", NodeIDFor(a), NodeIDFor(b), NodeID())
	}
	if len(NodeIDFor(a)) != 32 {
		t.Errorf("NodeIDFor(a) = %q, want 32 hex digits as the seed's", NodeIDFor(a))
	}
	// Two nodes on one host join one server without --node-id.
	env := servertest.Start(t, "")
	for i, dir := range []string{a, b} {
		k := env.Key(t, false)
		_, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: fmt.Sprint("twin", i), Port: 51820 + i})
		if err != nil {
			t.Errorf("node %d on this host: %v", i, err)
		}
	}
	_, err := Join(context.Background(), JoinOptions{Dir: t.TempDir(), ServerURL: env.URL(), JoinKey: env.Key(t, false).String(), NodeID: "../etc"})
	if err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Errorf("a bad --node-id: %v", err)
	}
}
