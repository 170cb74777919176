package server_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/pgtest"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// Two servers sharing one PostgreSQL database, as replicas behind DNS or
// a load balancer run.
func startReplicas(t *testing.T) (pg *pgtest.TestCluster, store string, a, b *servertest.Env) {
	t.Helper()
	pg = pgtest.Start(t)
	store = pg.NewDB()
	a = servertest.Start(t, "", servertest.Store(store))
	b = servertest.Replica(t, a, store)
	return pg, store, a, b
}

// A single-use key stays single-use when enrolments race on two replicas.
func TestReplicasSpendSingleUseKeyOnce(t *testing.T) {
	_, store, a, b := startReplicas(t)
	ok, used := raceKey(t, a.Key(t, false), a, b)
	if ok != 1 || used != 49 {
		t.Fatalf("50 enrolments across two replicas with one single-use key: %d succeeded, %d refused as used; want 1 and 49", ok, used)
	}
	if nodes := storedNodes(t, store); len(nodes) != 1 {
		t.Errorf("the store holds %d nodes, want 1", len(nodes))
	}
}

// Addresses chosen on two replicas at once never collide: each node gets
// its own, and both replicas agree on all of them.
func TestReplicasEnrolConcurrently(t *testing.T) {
	_, store, a, b := startReplicas(t)
	k := a.Key(t, true)
	var wg sync.WaitGroup
	ips := make([]string, 40)
	for i := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := []*servertest.Env{a, b}[i%2]
			n := servertest.NewNode(t)
			resp, err := env.Client(t, &n).Register(ctx, register(fmt.Sprintf("n%02d", i), n, &k))
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			ips[i] = resp.VPNIP
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, ip := range ips {
		if ip != "" && seen[ip] {
			t.Errorf("node %d got %s, which another node has", i, ip)
		}
		seen[ip] = true
	}
	if nodes := storedNodes(t, store); len(nodes) != len(ips) {
		t.Errorf("the store holds %d nodes, want %d", len(nodes), len(ips))
	}
	for _, env := range []*servertest.Env{a, b} {
		waitFor(t, 2*time.Second, func() bool {
			st, err := env.Admin(t).Status(ctx)
			return err == nil && st.Total == len(ips)
		}, "both replicas know every node")
	}
}

// A node enrolled through one replica may heartbeat through the other at
// once, as it does when it fails over.
func TestHeartbeatThroughOtherReplica(t *testing.T) {
	_, _, a, b := startReplicas(t)
	k := a.Key(t, false)
	n := servertest.NewNode(t)
	first, err := a.Client(t, &n).Register(ctx, register("mover", n, &k))
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Client(t, &n).Register(ctx, register("mover", n, nil))
	if err != nil {
		t.Fatalf("heartbeat through the other replica right after enrolling: %v", err)
	}
	if again.VPNIP != first.VPNIP {
		t.Errorf("address %s through the other replica, %s through the first", again.VPNIP, first.VPNIP)
	}
}

// What one replica learns (an enrolment, an endpoint that moved, a node's
// wire down and its return, an admin removal) reaches a long-poll on the
// other within a second.
func TestReplicaChangeReachesLongPoll(t *testing.T) {
	_, store, a, b := startReplicas(t)
	k := a.Key(t, true)
	y := servertest.NewNode(t)
	yc := b.Client(t, &y)
	if _, err := yc.Register(ctx, register("watcher", y, &k)); err != nil {
		t.Fatal(err)
	}
	full, err := yc.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}
	since := full.Version

	// An enrolment through a.
	x := servertest.NewNode(t)
	xc := a.Client(t, &x)
	polled := poll(yc, since)
	start := time.Now()
	if _, err := xc.Register(ctx, register("mover", x, &k)); err != nil {
		t.Fatal(err)
	}
	got := <-polled
	since = expectPeer(t, got, start, "the enrolment of mover through the other replica", func(p api.Peer) bool { return p.NodeName == "mover" })

	// A heartbeat through a that moves mover's endpoint.
	polled = poll(yc, since)
	start = time.Now()
	moved := register("mover", x, nil)
	moved.NATPort = 41234
	if _, err := xc.Register(ctx, moved); err != nil {
		t.Fatal(err)
	}
	got = <-polled
	since = expectPeer(t, got, start, "mover's new endpoint", func(p api.Peer) bool { return p.NodeName == "mover" && p.NATPort == 41234 })

	// wire down through a: mover leaves b's map within a second, and its
	// next heartbeat through a brings it back.
	polled = poll(yc, since)
	start = time.Now()
	if err := xc.Offline(ctx); err != nil {
		t.Fatal(err)
	}
	got = <-polled
	if got.err != nil || !slices.Contains(got.resp.Removed, "id-mover") {
		t.Fatalf("long-poll on the other replica after mover's wire down: %+v, %v; want mover removed", got.resp, got.err)
	}
	if d := got.at.Sub(start); d > time.Second {
		t.Errorf("mover's wire down reached the other replica's long-poll after %v, want within 1 s", d)
	}
	since = got.resp.Version
	polled = poll(yc, since)
	start = time.Now()
	if _, err := xc.Register(ctx, moved); err != nil {
		t.Fatal(err)
	}
	got = <-polled
	since = expectPeer(t, got, start, "mover back after a heartbeat", func(p api.Peer) bool { return p.NodeName == "mover" })

	// An admin rename, written to the shared store; then a heartbeat
	// through a with the old name and a new WireGuard key: the key
	// changes, the name stays the admin's.
	s, err := server.OpenStoreAt(ctx, "", store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	polled = poll(yc, since)
	start = time.Now()
	if _, err := s.RenameNode(ctx, "mover", "shaker"); err != nil {
		t.Fatal(err)
	}
	got = <-polled
	since = expectPeer(t, got, start, "mover's new name", func(p api.Peer) bool { return p.NodeID == "id-mover" && p.NodeName == "shaker" })
	polled = poll(yc, since)
	start = time.Now()
	rekeyed := register("mover", x, nil)
	rekeyed.WGPublicKey = servertest.NewNode(t).WGKey
	if resp, err := xc.Register(ctx, rekeyed); err != nil || resp.NodeName != "shaker" {
		t.Fatalf("a heartbeat with the old name and a new key: %+v, %v; want node_name shaker", resp, err)
	}
	got = <-polled
	since = expectPeer(t, got, start, "shaker's new key", func(p api.Peer) bool { return p.NodeName == "shaker" && p.WGPublicKey == rekeyed.WGPublicKey })

	// An admin removal, written to the shared store.
	polled = poll(yc, since)
	start = time.Now()
	if _, err := s.RemoveNode(ctx, "shaker"); err != nil {
		t.Fatal(err)
	}
	got = <-polled
	if got.err != nil || len(got.resp.Removed) != 1 {
		t.Fatalf("long-poll after the removal: %+v, %v", got.resp, got.err)
	}
	if d := got.at.Sub(start); d > time.Second {
		t.Errorf("the removal reached the other replica's long-poll after %v, want within 1 s", d)
	}
	if _, err := xc.Register(ctx, rekeyed); statusCode(err) != 401 {
		t.Errorf("the removed node's heartbeat through the first replica: %v, want 401", err)
	}
}

// A node that moves to the other replica, which holds the same map, is
// sent what changed, not the whole map: the replicas' versions differ,
// their map digests do not.
func TestFailoverSendsOnlyWhatChanged(t *testing.T) {
	_, _, a, b := startReplicas(t)
	k := a.Key(t, true)
	y := servertest.NewNode(t)
	yb := b.Client(t, &y)
	if _, err := yb.Register(ctx, register("watcher", y, &k)); err != nil {
		t.Fatal(err)
	}
	x := servertest.NewNode(t)
	if _, err := a.Client(t, &x).Register(ctx, register("other", x, &k)); err != nil {
		t.Fatal(err)
	}
	ya := a.Client(t, &y)
	var onB api.PeersResponse
	waitFor(t, 2*time.Second, func() bool {
		var errA, errB error
		var onA api.PeersResponse
		onA, errA = ya.Peers(ctx, "0", 0)
		onB, errB = yb.Peers(ctx, "0", 0)
		return errA == nil && errB == nil && len(onA.Peers) == 2 && len(onB.Peers) == 2
	}, "both replicas list both nodes")
	resp, err := ya.Peers(ctx, onB.Version, 0)
	if err != nil || resp.Full || len(resp.Peers)+len(resp.Removed) != 0 || resp.Version == onB.Version {
		t.Errorf("the other replica's version at the same map: %+v, %v; want no change and its own version", resp, err)
	}
}

// PostgreSQL restarting (a crash, a failover of its own) leaves the
// replicas serving what they know, and then serving all of it again.
func TestReplicasSurvivePostgresRestart(t *testing.T) {
	pg, _, a, b := startReplicas(t)
	k := a.Key(t, true)
	y := servertest.NewNode(t)
	yc := b.Client(t, &y)
	if _, err := yc.Register(ctx, register("watcher", y, &k)); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	// Without the store: heartbeats and peer lists go on from memory, a
	// new node is refused with an error that says why.
	if _, err := yc.Register(ctx, register("watcher", y, nil)); err != nil {
		t.Errorf("heartbeat while PostgreSQL is down: %v", err)
	}
	if _, err := yc.Peers(ctx, "", 0); err != nil {
		t.Errorf("peers while PostgreSQL is down: %v", err)
	}
	x := servertest.NewNode(t)
	xc := a.Client(t, &x)
	if _, err := xc.Register(ctx, register("late", x, &k)); err == nil {
		t.Error("an enrolment succeeded while PostgreSQL was down")
	} else if statusCode(err) != 503 {
		t.Errorf("enrolment while PostgreSQL is down: %v, want 503", err)
	}
	pg.Start()
	waitFor(t, 10*time.Second, func() bool {
		_, err := xc.Register(ctx, register("late", x, &k))
		return err == nil
	}, "an enrolment succeeds once PostgreSQL is back")
	waitFor(t, 2*time.Second, func() bool {
		p, err := yc.Peers(ctx, "0", 0)
		return err == nil && slices.ContainsFunc(p.Peers, func(p api.Peer) bool { return p.NodeName == "late" })
	}, "the other replica serves the node enrolled after the restart")
}

type polled struct {
	resp api.PeersResponse
	err  error
	at   time.Time
}

// poll long-polls c from version since, in the background.
func poll(c *api.Client, since string) <-chan polled {
	ch := make(chan polled, 1)
	go func() {
		resp, err := c.Peers(ctx, since, 10*time.Second)
		ch <- polled{resp, err, time.Now()}
	}()
	time.Sleep(50 * time.Millisecond) // let it reach the server and wait there
	return ch
}

// expectPeer checks that a long-poll answered within a second of start
// with a peer matching want, and returns the version to poll from next.
func expectPeer(t *testing.T, got polled, start time.Time, what string, want func(api.Peer) bool) string {
	t.Helper()
	if got.err != nil {
		t.Fatalf("%s: long-poll: %v", what, got.err)
	}
	found := false
	for _, p := range got.resp.Peers {
		found = found || want(p)
	}
	if !found {
		t.Fatalf("%s: the long-poll answered %+v", what, got.resp)
	}
	if d := got.at.Sub(start); d > time.Second {
		t.Errorf("%s reached the other replica's long-poll after %v, want within 1 s", what, d)
	}
	return got.resp.Version
}

func storedNodes(t *testing.T, store string) []api.NodeStatus {
	t.Helper()
	s, err := server.OpenStoreAt(context.Background(), "", store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, err := s.List(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

func waitFor(t *testing.T, limit time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Nodes on different replicas relay through each other's relays: the
// replicas' relays forward to each other.
func TestRelayAcrossReplicas(t *testing.T) {
	_, _, a, b := startReplicas(t)
	for _, pair := range [][2]*servertest.Env{{a, b}, {b, a}} {
		if err := pair[0].SetRelayPeers([]string{pair[1].RelayAddr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	_, cx, rx := enrol(t, a, "x")
	_, cy, ry := enrol(t, b, "y")
	x, gotX := dialRelay(t, a, cx, rx.VPNIP)
	y, gotY := dialRelay(t, b, cy, ry.VPNIP)
	send := func(c *relay.Conn, to string, msg string, got chan string, want string) {
		t.Helper()
		if err := c.WriteTo([]byte(msg), netip.MustParseAddr(to)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != want {
				t.Errorf("received %q, want %q", m, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%q did not arrive across the replicas' relays", msg)
		}
	}
	send(x, ry.VPNIP, "x to y", gotY, rx.VPNIP+":x to y")
	send(y, rx.VPNIP, "y to x", gotX, ry.VPNIP+":y to x")
}

// dialRelay binds the node with client c and address vpn to env's relay,
// with the credentials the server gives it, and returns the conn and what
// it receives, as "FROM:PAYLOAD".
func dialRelay(t *testing.T, env *servertest.Env, c *api.Client, vpn string) (*relay.Conn, chan string) {
	t.Helper()
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	return dialRelayOver(t, env, c, vpn, pc)
}

// dialRelayOver is dialRelay over pc, a socket or a relay.Stream.
func dialRelayOver(t *testing.T, env *servertest.Env, c *api.Client, vpn string, pc net.PacketConn) (*relay.Conn, chan string) {
	t.Helper()
	creds, err := c.Relay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := env.RelayAddr().(*net.UDPAddr).Port; creds.Port != want {
		t.Fatalf("relay_port %d, want %d", creds.Port, want)
	}
	conn, err := relay.NewConn(pc, relay.Config{Relay: netip.MustParseAddrPort(env.RelayAddr().String()), VPNIP: netip.MustParseAddr(vpn), Token: creds.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- from.String() + ":" + string(buf[:n])
		}
	}()
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := conn.Hello(hctx); err != nil {
		t.Fatalf("HELLO as %s: %v", vpn, err)
	}
	return conn, got
}

// An enrolment that succeeded through one replica but whose answer was
// lost is sent again, join key and all, to the other: it is the node's
// first heartbeat there, not a second use of the single-use key.
func TestEnrolmentRetriedThroughOtherReplica(t *testing.T) {
	_, _, a, b := startReplicas(t)
	k := a.Key(t, false)
	n := servertest.NewNode(t)
	first, err := a.Client(t, &n).Register(ctx, register("lost", n, &k))
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Client(t, &n).Register(ctx, register("lost", n, &k))
	if err != nil {
		t.Fatalf("the same enrolment again through the other replica: %v", err)
	}
	if again.VPNIP != first.VPNIP {
		t.Errorf("address %s, then %s", first.VPNIP, again.VPNIP)
	}
	// Another node with the spent key is still refused.
	o := servertest.NewNode(t)
	if _, err := b.Client(t, &o).Register(ctx, register("other", o, &k)); !contains(err, "already used") {
		t.Errorf("another node with the spent key: %v", err)
	}
}
