package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// Join keys through the real binary, while the server runs: key list
// shows every key with what became of it and never a secret, and key
// revoke (by id, or by the whole key pasted) stops a key at once.
func TestKeyListAndRevoke(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	once := newKey(t, dir)
	reusable := newKey(t, dir, "--reusable", "--ttl", "7d")
	n := servertest.NewNode(t)
	if _, err := nodeClient(t, srv.url, once, &n).Register(ctx, joinReq("alpha", n, &once)); err != nil {
		t.Fatal(err)
	}

	out, err := wire(t, "server", "key", "list", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{once.Secret, reusable.Secret} {
		if strings.Contains(out, secret) {
			t.Errorf("key list shows a secret:\n%s", out)
		}
	}
	row := func(id string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, id+" ") {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		return ""
	}
	if r := row(once.ID); !strings.HasPrefix(r, once.ID+" single-use used 1 ") {
		t.Errorf("the used key's row: %q\n%s", r, out)
	}
	if r := row(reusable.ID); !strings.HasPrefix(r, reusable.ID+" reusable valid 0 ") {
		t.Errorf("the reusable key's row: %q\n%s", r, out)
	}
	type keyListed struct {
		ID       string    `json:"id"`
		State    string    `json:"state"`
		Reusable bool      `json:"reusable"`
		Created  time.Time `json:"created_at"`
		Expires  time.Time `json:"expires_at"`
	}
	var listed []keyListed
	js, err := wire(t, "server", "key", "list", "--json", "--state-dir", dir)
	if err := json.Unmarshal([]byte(js), &listed); err != nil {
		t.Fatalf("key list --json: %v\n%s", err, js)
	}
	i := slices.IndexFunc(listed, func(l keyListed) bool { return l.ID == reusable.ID })
	if len(listed) != 2 || i < 0 || !listed[i].Reusable || listed[i].State != "valid" || listed[i].Expires.Sub(listed[i].Created) != 7*24*time.Hour {
		t.Errorf("key list --json: %+v; want the reusable key valid for 7 days", listed)
	}

	if out, err := wire(t, "server", "key", "revoke", "--state-dir", dir, reusable.String()); err != nil || !strings.Contains(out, "revoked join key "+reusable.ID) {
		t.Fatalf("key revoke with the whole key: %v %s", err, out)
	}
	m := servertest.NewNode(t)
	if _, err := nodeClient(t, srv.url, reusable, &m).Register(ctx, joinReq("beta", m, &reusable)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("enrolling with a revoked key: %v, want 401", err)
	}
	if _, err := wire(t, "server", "key", "revoke", "--state-dir", dir, reusable.ID); err == nil || !strings.Contains(err.Error(), "no join key with id") {
		t.Errorf("revoking it again: %v", err)
	}
	if _, err := wire(t, "server", "key", "revoke", "--state-dir", dir); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("key revoke without an id: %v", err)
	}
	if _, err := wire(t, "server", "key", "list", "--state-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no wire server state") {
		t.Errorf("key list of a state dir where no server ran: %v", err)
	}
}

// wire server node rename while the server runs: a peer waiting on a
// long-poll sees the new name within a second; a taken or invalid name,
// or a node that does not exist, is refused and changes nothing.
func TestNodeRename(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	k := newKey(t, dir, "--reusable")
	a, b := servertest.NewNode(t), servertest.NewNode(t)
	ca := nodeClient(t, srv.url, k, &a)
	for _, n := range []struct {
		name string
		c    *api.Client
		node servertest.Node
	}{{"alpha", ca, a}, {"beta", nodeClient(t, srv.url, k, &b), b}} {
		if _, err := n.c.Register(ctx, joinReq(n.name, n.node, &k)); err != nil {
			t.Fatal(err)
		}
	}
	peers, err := ca.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan api.PeersResponse, 1)
	go func() {
		r, _ := ca.Peers(ctx, peers.Version, 10*time.Second)
		got <- r
	}()
	start := time.Now()
	if out, err := wire(t, "server", "node", "rename", "--state-dir", dir, "BETA", "gamma"); err != nil || strings.TrimSpace(out) != "renamed beta to gamma" {
		t.Fatalf("node rename: %v %q", err, out)
	}
	delta := <-got
	if lag := time.Since(start); lag > 1500*time.Millisecond || len(delta.Peers) != 1 || delta.Peers[0].NodeName != "gamma" {
		t.Errorf("the rename reached alpha after %v as %+v", lag, delta)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"gamma", "ALPHA"}, `another node is named "ALPHA"`},
		{[]string{"gamma", "-x"}, "want 1 to 63 letters"},
		{[]string{"nobody", "delta"}, `no node named "nobody"`},
		{[]string{"gamma"}, "usage: wire server node rename"},
	} {
		args := append([]string{"server", "node", "rename", "--state-dir", dir}, bad.args...)
		if _, err := wire(t, args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("node rename %s: %v, want %q", strings.Join(bad.args, " "), err, bad.want)
		}
	}
	if stored := storedAddresses(t, "--state-dir", dir); len(stored) != 2 || stored["alpha"] == "" || stored["gamma"] == "" {
		t.Errorf("the store holds %v, want alpha and gamma", stored)
	}
}

// Node expiry through the real binary: key create --expire makes a key
// whose nodes expire after that long (key list says so), node expire
// expires one now (nodes lists it as expired and the server refuses it),
// and a new authentication with a key brings it back at its address.
func TestNodeExpiryCLI(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	out, err := wire(t, "server", "key", "create", "--state-dir", dir, "--reusable", "--expire", "90d")
	if err != nil || !strings.Contains(out, "(the nodes it enrols expire after 90d)") {
		t.Fatalf("key create --expire 90d: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	k, err := api.ParseJoinKey(lines[len(lines)-1])
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := wire(t, "server", "key", "list", "--state-dir", dir); !strings.Contains(out, "after 90d") {
		t.Errorf("key list does not say its nodes expire after 90d:\n%s", out)
	}
	for _, bad := range []string{"0s", "forever", "3651d", "30s"} {
		if _, err := wire(t, "server", "key", "create", "--state-dir", dir, "--expire", bad); err == nil || !strings.Contains(err.Error(), "--expire") {
			t.Errorf("key create --expire %s: %v, want refused", bad, err)
		}
	}
	n := servertest.NewNode(t)
	c := nodeClient(t, srv.url, k, &n)
	first, err := c.Register(ctx, joinReq("temp", n, &k))
	if err != nil {
		t.Fatal(err)
	}
	nodes := storedNodes(t, "--state-dir", dir)
	if len(nodes) != 1 || nodes[0].ExpiresAt == "" {
		t.Fatalf("nodes after enrolling with the key: %+v, want temp with an expiry", nodes)
	}
	if exp, _ := time.Parse(time.RFC3339, nodes[0].ExpiresAt); time.Until(exp) < 89*24*time.Hour {
		t.Errorf("temp expires at %s, want in 90 days", nodes[0].ExpiresAt)
	}

	if out, err := wire(t, "server", "node", "expire", "--state-dir", dir, "TEMP"); err != nil || !strings.Contains(out, "expired temp") {
		t.Fatalf("node expire: %v %s", err, out)
	}
	if _, err := wire(t, "server", "node", "expire", "--state-dir", dir, "nobody"); err == nil || !strings.Contains(err.Error(), `no node named "nobody"`) {
		t.Errorf("expiring a node that does not exist: %v", err)
	}
	if nodes := storedNodes(t, "--state-dir", dir); nodes[0].Status != "expired" {
		t.Errorf("nodes after node expire: %+v, want temp expired", nodes)
	}
	if out, _ := wire(t, "server", "nodes", "--state-dir", dir); !strings.Contains(out, "expired") {
		t.Errorf("wire server nodes does not show temp as expired:\n%s", out)
	}
	// The running server learns it within a second.
	var refused error
	deadline := time.Now().Add(2 * time.Second)
	for refused == nil && time.Now().Before(deadline) {
		_, refused = c.Register(ctx, joinReq("temp", n, nil))
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(fmt.Sprint(refused), "expired") {
		t.Fatalf("temp's heartbeat after node expire: %v, want refused as expired", refused)
	}
	again, err := c.Register(ctx, joinReq("temp", n, &k))
	if err != nil || again.VPNIP != first.VPNIP {
		t.Errorf("authenticating again: %+v, %v; want its address %s", again, err, first.VPNIP)
	}
}
