package server_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// enrolled is a node that the server acknowledged.
type enrolled struct {
	name string
	node servertest.Node
	c    *api.Client
	ip   string
}

// TestAdminChangesDuringEnrolments: admin commands (another process
// writing the store) while nodes enrol must not make the server forget
// any node it acknowledged, nor hand an address out twice. The admin's
// writes hold SQLite's write lock for a while, as a slow disk's fsync
// does, so that enrolments wait for it while the server notices the
// change and reloads.
func TestAdminChangesDuringEnrolments(t *testing.T) {
	env := servertest.Start(t, "")
	k := env.Key(t, true)
	admin, err := server.OpenStore(env.Dir) // as `wire server node remove` does
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	slow := openRaw(t, env.Dir)

	stop := make(chan struct{})
	var adminDone sync.WaitGroup
	adminDone.Add(1)
	go func() {
		defer adminDone.Done()
		for i := 0; i < 200; i++ { // bounded; stopped sooner below
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			tx, err := slow.Begin()
			if err == nil {
				_, err = tx.Exec(`INSERT INTO meta VALUES ('admin_test', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, i)
			}
			time.Sleep(20 * time.Millisecond)
			if err == nil {
				err = tx.Commit()
			}
			if err != nil {
				t.Errorf("admin write: %v", err)
				return
			}
		}
	}()

	var mu sync.Mutex
	var nodes []enrolled
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				name := fmt.Sprintf("w%d-%d", w, i)
				n := servertest.NewNode(t)
				c := env.Client(t, &n)
				resp, err := c.Register(ctx, register(name, n, &k))
				if err != nil {
					t.Errorf("enrol %s: %v", name, err)
					return
				}
				mu.Lock()
				nodes = append(nodes, enrolled{name, n, c, resp.VPNIP})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	adminDone.Wait()
	time.Sleep(600 * time.Millisecond) // the server has seen the last admin change

	byIP := map[string]string{}
	for _, n := range nodes {
		if other, dup := byIP[n.ip]; dup {
			t.Errorf("address %s handed to both %s and %s", n.ip, other, n.name)
		}
		byIP[n.ip] = n.name
		if _, err := n.c.Register(ctx, register(n.name, n.node, nil)); err != nil {
			t.Errorf("acknowledged node %s: heartbeat: %v", n.name, err)
		}
	}
	st, err := env.Admin(t).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != len(nodes) || st.Online != len(nodes) {
		t.Errorf("status: %d nodes, %d online; %d were acknowledged", st.Total, st.Online, len(nodes))
	}
	full, _ := nodes[0].c.Peers(ctx, "0", 0)
	if len(full.Peers) != len(nodes) {
		t.Errorf("peers: %d, want %d", len(full.Peers), len(nodes))
	}

	// Removal by the admin still works, and frees just that node.
	if _, err := admin.RemoveNode(ctx, nodes[0].name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := nodes[0].c.Register(ctx, register(nodes[0].name, nodes[0].node, nil)); statusCode(err) != http.StatusUnauthorized {
		t.Errorf("removed node's heartbeat: err = %v, want 401", err)
	}
	if _, err := nodes[1].c.Register(ctx, register(nodes[1].name, nodes[1].node, nil)); err != nil {
		t.Errorf("another node after the removal: %v", err)
	}
}

// TestIdentityChangeByHeartbeat: `wire up --name NEW` on an enrolled node,
// and a new WireGuard key, reach the store, /status and /peers at once,
// and peers waiting on a long-poll within a second.
func TestIdentityChangeByHeartbeat(t *testing.T) {
	env := servertest.Start(t, "")
	n, c, _ := enrol(t, env, "old-name")
	_, peer, _ := enrol(t, env, "watcher")
	full, err := peer.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		resp api.PeersResponse
		err  error
	}
	polled := make(chan result, 1)
	go func() {
		r, err := peer.Peers(ctx, full.Version, 10*time.Second)
		polled <- result{r, err}
	}()
	time.Sleep(100 * time.Millisecond)
	renamed := register("new-name", n, nil)
	renamed.NodeID = "id-old-name"
	renamed.WGPublicKey = servertest.NewNode(t).WGKey
	renamed.Rename = true
	if _, err := c.Register(ctx, renamed); err != nil {
		t.Fatalf("heartbeat with a new name and key: %v", err)
	}
	select {
	case res := <-polled:
		if res.err != nil || len(res.resp.Peers) != 1 || res.resp.Peers[0].NodeName != "new-name" || res.resp.Peers[0].WGPublicKey != renamed.WGPublicKey {
			t.Errorf("long-poll after the change: %+v, %v; want new-name with its new key", res.resp, res.err)
		}
	case <-time.After(time.Second):
		t.Fatal("the change did not reach a waiting peer within a second")
	}

	// Every view agrees at once: status, peers, and the store, as
	// `wire server nodes` reads it.
	st, _ := env.Admin(t).Status(ctx)
	store, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := store.List(ctx, time.Now())
	store.Close()
	names := func(ns []api.NodeStatus) string { return fmt.Sprint(ns[0].NodeName, ",", ns[1].NodeName) }
	if got := names(st.Nodes); got != "new-name,watcher" {
		t.Errorf("status lists %s", got)
	}
	if got := names(listed); got != "new-name,watcher" {
		t.Errorf("the store lists %s", got)
	}
	// The node keeps working: the next heartbeats are answered, and the
	// old name is free for another node.
	for range 3 {
		if _, err := c.Register(ctx, renamed); err != nil {
			t.Fatalf("heartbeat after the change: %v", err)
		}
	}
	other := servertest.NewNode(t)
	req := register("old-name", other, ptr(env.Key(t, false)))
	req.NodeID = "id-another"
	if _, err := env.Client(t, &other).Register(ctx, req); err != nil {
		t.Errorf("another node taking the old name: %v", err)
	}
}

// openRaw opens the store's database as another process would, for
// writes the Store has no method for.
func openRaw(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, server.StoreFile)+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func ptr[T any](v T) *T { return &v }

// A node's own registrations may overlap (a client that retries, two
// heartbeats that change its name): they all succeed, as one node.
func TestOverlappingRegistrationsOfOneNode(t *testing.T) {
	env := servertest.Start(t, "")
	k := env.Key(t, true)
	n := servertest.NewNode(t)
	errs := make(chan error, 20)
	ips := make(chan string, 10)
	for range 10 {
		go func() {
			resp, err := env.Client(t, &n).Register(ctx, register("twin", n, &k))
			errs <- err
			ips <- resp.VPNIP
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Errorf("an overlapping enrolment: %v", err)
		}
		if ip := <-ips; ip == "" {
			t.Error("no address")
		}
	}
	renamed := register("twin-renamed", n, nil)
	renamed.NodeID = "id-twin"
	renamed.Rename = true
	for range 10 {
		go func() {
			_, err := env.Client(t, &n).Register(ctx, renamed)
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Errorf("an overlapping rename: %v", err)
		}
	}
	st, _ := env.Admin(t).Status(ctx)
	if st.Total != 1 || st.Nodes[0].NodeName != "twin-renamed" {
		t.Errorf("status = %+v, want one node, renamed", st)
	}
}

// POST /offline takes the calling node out of the online set at once; its
// next heartbeat brings it back. Only a node may say it of itself.
func TestOffline(t *testing.T) {
	env := servertest.Start(t, "")
	_, ca, _ := enrol(t, env, "a")
	nb, cb, _ := enrol(t, env, "b")
	full, _ := ca.Peers(ctx, "0", 0)
	if err := cb.Offline(ctx); err != nil {
		t.Fatal(err)
	}
	delta, err := ca.Peers(ctx, full.Version, time.Second)
	if err != nil || len(delta.Removed) != 1 || delta.Removed[0] != "id-b" {
		t.Errorf("a's poll after b went offline: %+v, %v", delta, err)
	}
	st, _ := env.Admin(t).Status(ctx)
	if st.Online != 1 || st.Offline != 1 || st.Nodes[1].Status != "offline" {
		t.Errorf("status = %+v", st)
	}
	if h, _ := env.Client(t, nil).Health(ctx); h.Online != 1 || h.Total != 2 {
		t.Errorf("health = %+v", h)
	}
	if _, err := cb.Register(ctx, register("b", nb, nil)); err != nil {
		t.Fatal(err)
	}
	if st, _ := env.Admin(t).Status(ctx); st.Online != 2 {
		t.Errorf("after b's heartbeat: %+v", st)
	}
	if err := env.Admin(t).Offline(ctx); statusCode(err) != http.StatusForbidden {
		t.Errorf("the admin saying offline: %v, want 403", err)
	}
	stranger := servertest.NewNode(t)
	if err := env.Client(t, &stranger).Offline(ctx); statusCode(err) != http.StatusUnauthorized {
		t.Errorf("an unenrolled key saying offline: %v, want 401", err)
	}
}
