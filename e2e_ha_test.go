package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/pgtest"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// startReplica runs `wire server --store` with the identity of first's
// state dir (nil: a new one) and returns its process and state dir.
func startReplica(t *testing.T, store, first string) (*serverProc, string) {
	t.Helper()
	dir := t.TempDir()
	if first != "" {
		servertest.CopyIdentity(t, first, dir)
	}
	return startServer(t, dir, "--store", store), dir
}

// Two replicas on one PostgreSQL; nodes that know both. One replica is
// SIGKILLed while nodes enrol and heartbeat: they go on through the other
// within seconds, and every acknowledged enrolment is in the store.
func TestReplicaKilledDuringEnrolments(t *testing.T) {
	pg := pgtest.Start(t)
	store := pg.NewDB()
	a, aDir := startReplica(t, store, "")
	b, _ := startReplica(t, store, aDir)
	out, err := wire(t, "server", "key", "create", "--reusable", "--store", store)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	k, err := api.ParseJoinKey(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("key create printed %q: %v", out, err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[string]string{} // name: address
	var worst time.Duration      // the longest a node went without an answer
	var killedAt time.Time
	afterKill := 0 // enrolments acknowledged after it
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%dn%d", w, i)
				n := servertest.NewNode(t)
				// Every node knows both servers, the one to be killed first.
				c, err := api.NewClient(api.ClientConfig{URL: a.url, Others: []string{b.url}, Pin: k.Pin, Cert: &n.Cert})
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := c.Register(ctx, joinReq(name, n, &k))
				if err != nil {
					continue // cut off mid-request: not acknowledged
				}
				mu.Lock()
				acked[name] = resp.VPNIP
				if !killedAt.IsZero() {
					afterKill++
				}
				mu.Unlock()
				// A few heartbeats, as a node sends them.
				last := time.Now()
				for range 3 {
					time.Sleep(20 * time.Millisecond)
					if _, err := c.Register(ctx, joinReq(name, n, nil)); err != nil {
						t.Errorf("%s: heartbeat: %v", name, err)
						continue
					}
					mu.Lock()
					worst = max(worst, time.Since(last))
					mu.Unlock()
					last = time.Now()
				}
				c.CloseIdle()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	a.kill()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	stored := storedAddresses(t, "--store", store)
	if len(acked) < 20 {
		t.Fatalf("only %d enrolments were acknowledged: the test did not exercise the servers", len(acked))
	}
	for name, ip := range acked {
		if stored[name] != ip {
			t.Errorf("acknowledged enrolment %s (%s) is %q in the store after the kill", name, ip, stored[name])
		}
	}
	if afterKill < 5 {
		t.Errorf("only %d enrolments were acknowledged after the kill: the other replica did not take over", afterKill)
	}
	if worst > 5*time.Second {
		t.Errorf("a node went %v without an answer across the kill, want within seconds", worst)
	}
	// The surviving replica serves every node the store holds.
	admin, err := api.NewClient(api.ClientConfig{URL: b.url, Pin: k.Pin, AdminToken: readToken(t, aDir)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := admin.Status(ctx)
	if err != nil || st.Total != len(stored) {
		t.Errorf("the surviving replica's status: %d nodes, %v; the store holds %d", st.Total, err, len(stored))
	}
	t.Logf("%d acknowledged enrolments (%d after the kill, %d stored); longest wait for a heartbeat's answer %v", len(acked), afterKill, len(stored), worst)
}

func readToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, server.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A mesh moves from SQLite to PostgreSQL and back: every node keeps its
// address and identity, and heartbeats on without enrolling again.
func TestMigrateRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := startServer(t, dir)
	k := newKey(t, dir, "--reusable", "--tag", "tag:ci")
	type member struct {
		name string
		n    servertest.Node
		ip   string
	}
	var members []member
	for i := range 12 {
		m := member{name: fmt.Sprintf("m%02d", i), n: servertest.NewNode(t)}
		resp, err := nodeClient(t, srv.url, k, &m.n).Register(ctx, joinReq(m.name, m.n, &k))
		if err != nil {
			t.Fatal(err)
		}
		m.ip = resp.VPNIP
		members = append(members, m)
	}
	if _, err := wire(t, "server", "node", "remove", "--state-dir", dir, "m03"); err != nil {
		t.Fatal(err)
	}
	members = append(members[:3], members[4:]...)
	// One said it goes down: its stored down time comes along too (the
	// migration checks every field of every node it copied).
	if err := nodeClient(t, srv.url, k, &members[0].n).Offline(ctx); err != nil {
		t.Fatal(err)
	}
	// Another's enrolment expired: so it stays.
	if _, err := wire(t, "server", "node", "expire", "--state-dir", dir, members[1].name); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	before := nodesJSON(t, "--state-dir", dir)

	pg := pgtest.Start(t)
	store := pg.NewDB()
	if _, err := wire(t, "server", "migrate", "--from", "sqlite:"+filepath.Join(dir, server.StoreFile), "--to", store); err != nil {
		t.Fatal(err)
	}
	if got := nodesJSON(t, "--store", store); got != before {
		t.Errorf("nodes in PostgreSQL:\n%s\nin SQLite:\n%s", got, before)
	}
	// Into a store that holds a mesh already: refused, and nothing changes.
	if _, err := wire(t, "server", "migrate", "--from", "sqlite:"+dir, "--to", store); err == nil || !strings.Contains(err.Error(), "empty one") {
		t.Errorf("migrating into a full store: %v", err)
	}
	if _, err := wire(t, "server", "migrate", "--from", "sqlite:"+t.TempDir(), "--to", store); err == nil || !strings.Contains(err.Error(), "no wire store") {
		t.Errorf("migrating from a dir without a store: %v", err)
	}
	// A server on PostgreSQL with the old identity knows every node.
	replica, _ := startReplica(t, store, dir)
	for i, m := range members {
		resp, err := nodeClient(t, replica.url, k, &m.n).Register(ctx, joinReq(m.name, m.n, nil))
		if i == 1 { // expired: refused until it authenticates again with a key
			if !strings.Contains(fmt.Sprint(err), "expired") {
				t.Errorf("the expired %s after the migration: %v, want refused as expired", m.name, err)
			}
			resp, err = nodeClient(t, replica.url, k, &m.n).Register(ctx, joinReq(m.name, m.n, &k))
		}
		if err != nil || resp.VPNIP != m.ip {
			t.Errorf("%s after the migration: %+v, %v; want its address %s", m.name, resp, err, m.ip)
		}
	}
	// The key's uses and tags came along: it still admits nodes.
	n := servertest.NewNode(t)
	if _, err := nodeClient(t, replica.url, k, &n).Register(ctx, joinReq("late", n, &k)); err != nil {
		t.Errorf("the migrated reusable key: %v", err)
	}
	replica.kill()

	back := t.TempDir()
	if _, err := wire(t, "server", "migrate", "--from", store, "--to", "sqlite:"+back); err != nil {
		t.Fatal(err)
	}
	if got, want := nodesJSON(t, "--state-dir", back), nodesJSON(t, "--store", store); got != want {
		t.Errorf("nodes back in SQLite:\n%s\nin PostgreSQL:\n%s", got, want)
	}
}

// nodesJSON is `wire server nodes --json`, without the times that change.
func nodesJSON(t *testing.T, args ...string) string {
	t.Helper()
	nodes := storedNodes(t, args...)
	for i := range nodes {
		nodes[i].LastSeenAgo, nodes[i].Status = 0, ""
	}
	b, _ := json.MarshalIndent(nodes, "", " ")
	return string(b)
}
