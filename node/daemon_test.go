package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/internal/roottest"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
	"github.com/wire-mesh/wire/wg"
	"github.com/wire-mesh/wire/wg/wgtest"
)

// testNode is a daemon on a fake engine, joined to env.
type testNode struct {
	*Daemon
	engine *wgtest.Engine
	stop   func()
}

func startNode(t *testing.T, env *servertest.Env, dir, name string, mapped netip.AddrPort) *testNode {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
		k := env.Key(t, false)
		if _, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: name, Port: 51820, Interface: "wire-" + name, NodeID: "id-" + name}); err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
	}
	eng := wgtest.New("wire-" + name)
	eng.SetDiscover(mapped, nil)
	d, err := New(Options{Dir: dir, NewEngine: func(wg.Options) (wg.Engine, error) { return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	n := &testNode{Daemon: d, engine: eng, stop: func() { cancel(); <-done }}
	t.Cleanup(n.stop)
	return n
}

// waitPeers waits until the node's engine has exactly the given peers'
// keys, and returns that config.
func (n *testNode) waitPeers(t *testing.T, want ...*testNode) wg.Config {
	t.Helper()
	var keys []wg.Key
	for _, p := range want {
		keys = append(keys, p.keys.WG.PublicKey())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cfg, err := n.engine.Wait(ctx, func(c wg.Config) bool {
		var got []wg.Key
		for _, p := range c.Peers {
			got = append(got, p.PublicKey)
		}
		return len(got) == len(keys) && !slices.ContainsFunc(keys, func(k wg.Key) bool { return !slices.Contains(got, k) })
	})
	if err != nil {
		last, _ := n.engine.Last()
		t.Fatalf("%s: engine never had peers %v; last config %+v", n.cfg.NodeName, keys, last)
	}
	return cfg
}

func TestDaemonsFindEachOther(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	start := time.Now()
	a.waitPeers(t, b)
	if lag := time.Since(start); lag > time.Second {
		t.Errorf("a learned of b after %v, want < 1s", lag)
	}
	// Once b has registered its STUN mapping, a uses it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cfg, err := a.engine.Wait(ctx, func(c wg.Config) bool {
		return len(c.Peers) == 1 && c.Peers[0].Endpoint.Port() == 40002
	})
	if err != nil {
		t.Fatalf("a never used b's mapped port 40002: %v", err)
	}
	p := cfg.Peers[0]
	// Both reach the server from 127.0.0.1, as two nodes behind one NAT
	// would; on loopback there is no LAN address, so the public mapping
	// is used.
	if p.Endpoint.String() != "127.0.0.1:40002" || p.AllowedIPs[0].Bits() != 32 || p.AllowedIPs[0].Addr().String() != b.cfg.VPNIP {
		t.Errorf("a's peer b = %+v", p)
	}
	b.waitPeers(t, a)

	// b is removed by the admin: a drops it.
	removeNode(t, env, "b")
	a.waitPeers(t)
}

func TestStatusAndPaths(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	c := startNode(t, env, "", "c", netip.MustParseAddrPort("198.51.100.3:40003"))
	a.waitPeers(t, b, c)
	now := time.Now()
	a.engine.SetPeers([]wg.PeerStatus{
		{PublicKey: b.keys.WG.PublicKey(), LastHandshake: now.Add(-10 * time.Second), RxBytes: 5},
		{PublicKey: c.keys.WG.PublicKey(), LastHandshake: now.Add(-10 * time.Minute)},
	})
	st := a.Status(context.Background())
	if st.NodeName != "a" || st.VPNIP != a.cfg.VPNIP || !st.ServerReachable || st.Online != 3 || len(st.Peers) != 2 {
		t.Fatalf("status = %+v", st)
	}
	// The seed's /status shape is there too: the server's version and its
	// node list, this node included.
	if st.Version != "test" || len(st.Nodes) != 3 || st.Nodes[0].NodeName != "a" || st.Nodes[0].Status != "online" {
		t.Errorf("status version %q, nodes %+v; want the server's", st.Version, st.Nodes)
	}
	got := map[string]string{}
	for _, p := range st.Peers {
		got[p.NodeName] = fmt.Sprintf("%s/%s/%v", p.Status, p.Path, p.LatestHandshake != nil)
	}
	want := map[string]string{"b": "online/direct/true", "c": "online/none/true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("peers = %v, want %v", got, want)
	}
}

func TestRestartFromCacheWithoutServer(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	a.stop()
	env.Stop()
	// The server is gone; a restarts and configures b from its cache.
	again := startNode(t, env, a.dir, "a", netip.AddrPort{})
	first, ok := again.engine.Last()
	if !ok || len(first.Peers) != 1 || first.Peers[0].PublicKey != b.keys.WG.PublicKey() {
		t.Fatalf("after a restart without the server, the engine has %+v; want b from the cache", first)
	}
	if st := again.Status(context.Background()); st.ServerReachable || st.Peers[0].Status != "unknown" || st.Online != 1 ||
		len(st.Nodes) != 2 || st.Nodes[1].NodeName != "b" || st.Nodes[1].Status != "unknown" || st.Version != "" {
		t.Errorf("status without a server = %+v", st)
	}
	// b's tunnel answers: without the server, that is what tells.
	again.engine.SetPeers([]wg.PeerStatus{{PublicKey: b.keys.WG.PublicKey(), LastHandshake: time.Now().Add(-5 * time.Second), Endpoint: first.Peers[0].Endpoint}})
	st := again.Status(context.Background())
	if st.Peers[0].Status != "unknown" || st.Peers[0].Path != PathDirect || st.Online != 2 {
		t.Errorf("status without a server, b's tunnel up: online %d, b %+v", st.Online, st.Peers[0])
	}
}

// A peer whose direct endpoint never answers goes to the relay after three
// probes, and back to direct as soon as probes are answered.
func TestPathFallsBackToRelay(t *testing.T) {
	probeEvery, probeTimeout = 100*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { probeEvery, probeTimeout = 2*time.Second, 1500*time.Millisecond }) // after the nodes stop
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	direct := netip.MustParseAddrPort("127.0.0.1:40002")
	endpointIs := func(want netip.AddrPort) func(wg.Config) bool {
		return func(c wg.Config) bool { return len(c.Peers) == 1 && c.Peers[0].Endpoint == want }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.engine.Wait(ctx, endpointIs(direct)); err != nil {
		t.Fatalf("a never reached b directly: %v", err)
	}
	a.engine.Block(direct, true)
	relayEP := wg.RelayEndpoint(netip.MustParseAddr(b.cfg.VPNIP))
	if _, err := a.engine.Wait(ctx, endpointIs(relayEP)); err != nil {
		last, _ := a.engine.Last()
		t.Fatalf("a never moved b to the relay: %v (last %+v, relay %s)", err, last.Peers, a.relay)
	}
	// a's status says why, and its heartbeat tells the server's admin.
	if ps := a.Peers(ctx); len(ps) != 1 || !strings.Contains(ps[0].Why, "direct probes to "+direct.String()+" unanswered since") {
		t.Errorf("a's status of b on the relay: %+v; want why", ps)
	}
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	if m := env.Mesh(); m.Nodes[0].NodeName != "a" || !slices.Equal(m.Nodes[0].Relayed, []string{"id-b"}) {
		t.Errorf("the server's mesh after a's heartbeat: %+v; want a relaying to b", m.Nodes)
	}
	a.engine.Block(direct, false)
	if _, err := a.engine.Wait(ctx, endpointIs(direct)); err != nil {
		t.Fatalf("a never moved b back to direct: %v", err)
	}
	if ps := a.Peers(ctx); len(ps) != 1 || ps[0].Why != "" {
		t.Errorf("a's status of b back on the direct path: %+v; want no why", ps)
	}
}

// An engine that cannot probe (kernel WireGuard) moves a peer that never
// completes a handshake to the relay, and tries direct again when the
// peer's endpoint changes.
func TestPathWithoutProbes(t *testing.T) {
	probeEvery, noHandshake = 100*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { probeEvery, noHandshake = 2*time.Second, 15*time.Second })
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	a.engine.SetProbeUnsupported(true)
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	endpointIs := func(want netip.AddrPort) func(wg.Config) bool {
		return func(c wg.Config) bool { return len(c.Peers) == 1 && c.Peers[0].Endpoint == want }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relayEP := wg.RelayEndpoint(netip.MustParseAddr(b.cfg.VPNIP))
	if _, err := a.engine.Wait(ctx, endpointIs(relayEP)); err != nil {
		last, _ := a.engine.Last()
		t.Fatalf("a never moved the silent peer b to the relay: %v (last %+v)", err, last.Peers)
	}
	// b moves (its next STUN round, within discoverEvery, finds out): a
	// tries the new direct endpoint.
	b.engine.SetDiscover(netip.MustParseAddrPort("198.51.100.2:40009"), nil)
	ctx, cancel = context.WithTimeout(context.Background(), discoverEvery+3*time.Second)
	defer cancel()
	if _, err := a.engine.Wait(ctx, endpointIs(netip.MustParseAddrPort("127.0.0.1:40009"))); err != nil {
		t.Fatalf("a did not try b's new direct endpoint: %v", err)
	}
}

// wire down gets its answer before the daemon goes (it stops right after
// replying, and must not close the connection under the reply), and
// returns once the interface is gone, so that a wire up right after does
// not race the teardown.
func TestDownAnswers(t *testing.T) {
	roottest.Need(t, "as wire down does")
	env := servertest.Start(t, "")
	for i := range 20 {
		n := startNode(t, env, "", fmt.Sprintf("n%d", i), netip.MustParseAddrPort("198.51.100.1:40001"))
		if msg, err := Down(context.Background(), NewClient(n.dir)); err != nil || msg != "wire is down" {
			t.Fatalf("down #%d: %q, %v", i, msg, err)
		}
		if !n.engine.Closed() {
			t.Fatalf("down #%d returned with the interface still there", i)
		}
		n.stop() // returns once Run has
	}
}

// A peer the admin removes leaves WireGuard for good, even when the
// removal lands while an older state (one with the peer) is being
// applied: the engine never ends up with the older one.
func TestRemovedPeerStaysRemoved(t *testing.T) {
	probeEvery, probeTimeout = 100*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { probeEvery, probeTimeout = 2*time.Second, 1500*time.Millisecond })
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	direct := netip.MustParseAddrPort("127.0.0.1:40002")
	if _, err := a.engine.Wait(ctx, func(c wg.Config) bool { return len(c.Peers) == 1 && c.Peers[0].Endpoint == direct }); err != nil {
		t.Fatal(err)
	}

	// b's direct path fails, so a moves it to the relay: a Set with b in
	// it, which waits until another Set overlaps it (or 2 s).
	held := a.engine.HoldNextSet()
	a.engine.Block(direct, true)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("a never applied b's path change")
	}
	// Meanwhile the admin removes b.
	removeNode(t, env, "b")
	a.waitPeers(t)
	time.Sleep(2500 * time.Millisecond) // past the held Set, and some probe rounds
	if last, _ := a.engine.Last(); len(last.Peers) != 0 {
		t.Errorf("after the removal the engine has %d peers: an older state was applied last", len(last.Peers))
	}
}

// Kernel WireGuard takes the port at the first Set, and STUN cannot be
// sent from it after that: the node still tells the server its mapping.
func TestKernelEngineKeepsMapping(t *testing.T) {
	env := servertest.Start(t, "")
	dir := t.TempDir()
	k := env.Key(t, false)
	if _, err := Join(context.Background(), JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: "k", Port: 51820, Interface: "wire-k", NodeID: "id-k"}); err != nil {
		t.Fatal(err)
	}
	eng := wgtest.New("wire-k")
	eng.LikeKernel()
	mapped := netip.MustParseAddrPort("198.51.100.7:40007")
	eng.SetDiscover(mapped, nil)
	var port int
	d, err := New(Options{Dir: dir, NewEngine: func(o wg.Options) (wg.Engine, error) { port = o.ListenPort; return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if port != 51820 {
		t.Errorf("the engine was made for port %d, not the configured 51820: its STUN query would map another port", port)
	}
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	peers, err := env.Admin(t).Peers(context.Background(), "", 0)
	if err != nil || len(peers.Peers) != 1 || peers.Peers[0].NATPort != int(mapped.Port()) {
		t.Fatalf("the server has %+v, %v; want nat_port %d", peers.Peers, err, mapped.Port())
	}
	if st := d.Status(context.Background()); st.NATPort != int(mapped.Port()) {
		t.Errorf("status nat_port = %d, want %d", st.NATPort, mapped.Port())
	}
}

// wire down tells the server: peers drop the node within a second, and
// see it offline, rather than online for five minutes.
func TestDownTellsServer(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	if ps := a.Peers(context.Background()); len(ps) != 1 || ps[0].Status != "online" || ps[0].LastSeenAgo < 0 {
		t.Errorf("a's peers = %+v, want b online as the server says", ps)
	}

	downAt := time.Now()
	b.Down()
	b.stop()
	a.waitPeers(t)
	if lag := time.Since(downAt); lag > 1500*time.Millisecond {
		t.Errorf("a dropped b %v after wire down, want within a second", lag)
	}
	st := a.Status(context.Background())
	if len(st.Peers) != 1 || st.Peers[0].Status != "offline" || st.Online != 1 || st.Offline != 1 {
		t.Errorf("a's status after b's wire down = %+v", st)
	}
	_, err := a.Ping(context.Background(), "B", 1, time.Second, nil)
	if !errors.Is(err, ErrPeerOffline) || !strings.Contains(err.Error(), "b (") {
		t.Errorf("ping b after its wire down: %v, want it called offline", err)
	}

	// b comes back: its first heartbeat puts it in the mesh again.
	b = startNode(t, env, b.dir, "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)

	// While the server is away, peers' status is unknown, not online.
	env.Stop()
	if ps := a.Peers(context.Background()); len(ps) != 1 || ps[0].Status != "unknown" || ps[0].LastSeenAgo != -1 {
		t.Errorf("a's peers without a server = %+v, want b unknown", ps)
	}
}

// A node the admin removes is told: its status, its checks and so MCP say
// that it was removed and how to join again.
func TestRemovedNodeIsTold(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	if st := b.Status(context.Background()); st.Removed || st.Advice != "" {
		t.Fatalf("status before the removal: removed %v, %q", st.Removed, st.Advice)
	}
	removeNode(t, env, "b")
	var st Status
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st = b.Status(context.Background()); st.Removed {
			break
		}
	}
	if !st.Removed || !strings.Contains(st.Advice, "removed") || !strings.Contains(st.Advice, "wire up --server URL --join KEY") {
		t.Errorf("b's status after its removal: removed %v, advice %q", st.Removed, st.Advice)
	}
	var server Check
	for _, c := range Checks(context.Background(), b.dir) {
		if c.Name == "server" {
			server = c
		}
	}
	if server.OK || !strings.Contains(server.Finding, "removed") || !strings.Contains(server.Fix, "--join KEY") {
		t.Errorf("wire install's server check: %+v", server)
	}
	// A restart of the removed node's daemon fails with the same advice.
	b.stop()
	eng := wgtest.New("wire-b")
	d, err := New(Options{Dir: b.dir, NewEngine: func(wg.Options) (wg.Engine, error) { return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); !errors.Is(err, ErrRemoved) {
		t.Errorf("starting a removed node: %v, want ErrRemoved", err)
	}
}

// A daemon that stops leaves no goroutine behind: not its loops, its
// control socket's, its relay connection's, nor its network watcher's.
func TestDaemonLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	a.Status(context.Background())
	a.stop()
	b.stop()
	env.Stop()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// removeNode removes a node as the admin does, with wire server node
// remove on the server's store.
func removeNode(t *testing.T, env *servertest.Env, name string) {
	t.Helper()
	store, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.RemoveNode(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// The peer cache is written in the background soon after the peers
// change, not only when the daemon stops.
func TestPeerCacheWrittenWhileRunning(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	deadline := time.Now().Add(3 * cacheEvery)
	for {
		if cached := loadPeers(a.dir); len(cached) == 1 {
			for _, p := range cached {
				if p.NodeName != "b" {
					t.Fatalf("the cache holds %+v, want b", p)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer cache did not list b within %v of its arrival: %v", 3*cacheEvery, loadPeers(a.dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An admin renames a node: within a second it answers to the new name,
// its peer knows it by that name, and its config keeps it, so that the
// next heartbeat and a restart do not undo the rename. A rename the node
// asks for (wire up --name, which sets Rename) wins again.
func TestAdminRenameReachesTheNode(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	b.waitPeers(t, a)

	store, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.RenameNode(context.Background(), "b", "bee"); err != nil {
		t.Fatal(err)
	}
	renamed := func() error {
		if st := b.Status(context.Background()); st.NodeName != "bee" {
			return fmt.Errorf("b calls itself %q", st.NodeName)
		}
		if _, ok := a.resolve("bee"); !ok {
			return errors.New("a knows no peer bee")
		}
		cfg, err := LoadConfig(b.dir)
		if err != nil || cfg.NodeName != "bee" || cfg.Rename {
			return fmt.Errorf("b's saved config: %+v, %v", cfg, err)
		}
		return nil
	}
	if err := waitFor(time.Second, renamed); err != nil {
		t.Fatalf("a second after the rename: %v", err)
	}
	if err := b.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if listed := servertest.StoredNames(t, store); listed != "a bee" {
		t.Errorf("after b's heartbeat the store holds %s, want a bee", listed)
	}

	// b asks for its old name back, as wire up --name b does.
	b.stop()
	cfg, err := LoadConfig(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeName, cfg.Rename = "b", true
	if err := cfg.Save(b.dir); err != nil {
		t.Fatal(err)
	}
	b = startNode(t, env, b.dir, "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	if err := waitFor(2*time.Second, func() error {
		if _, ok := a.resolve("b"); !ok {
			return errors.New("a knows no peer b")
		}
		if cfg, err := LoadConfig(b.dir); err != nil || cfg.NodeName != "b" || cfg.Rename {
			return fmt.Errorf("b's saved config: %+v, %v", cfg, err)
		}
		return nil
	}); err != nil {
		t.Errorf("after b asked for its name back: %v", err)
	}
}

// waitFor polls ok until it returns nil, for at most d.
func waitFor(d time.Duration, ok func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := ok()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An admin expires a node's enrolment: its daemon says so, with what to
// do, and its peer drops it; authenticating again with a key (as wire up
// --join does on a running node) brings it back at once.
func TestExpiredNodeAuthenticatesAgain(t *testing.T) {
	env := servertest.Start(t, "")
	a := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	b := startNode(t, env, "", "b", netip.MustParseAddrPort("198.51.100.2:40002"))
	a.waitPeers(t, b)
	store, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.ExpireNode(context.Background(), "b", time.Now()); err != nil {
		t.Fatal(err)
	}
	a.waitPeers(t)
	if err := b.register(context.Background()); !errors.Is(err, ErrExpired) {
		t.Errorf("b's heartbeat once expired: %v, want ErrExpired", err)
	}
	if st := b.Status(context.Background()); !st.Expired || st.Removed || !strings.Contains(st.Advice, "sudo wire up --join KEY") {
		t.Errorf("b's status once expired: expired %v, removed %v, advice %q", st.Expired, st.Removed, st.Advice)
	}

	other := servertest.Start(t, "") // a key for another server is refused
	if err := b.Authenticate(context.Background(), other.Key(t, false).String()); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("authenticating with another server's key: %v", err)
	}
	start := time.Now()
	if err := b.Authenticate(context.Background(), env.Key(t, false).String()); err != nil {
		t.Fatalf("authenticating again: %v", err)
	}
	a.waitPeers(t, b)
	if lag := time.Since(start); lag > 2*time.Second {
		t.Errorf("a had b back %v after it authenticated again", lag)
	}
	if st := b.Status(context.Background()); st.Expired || st.Advice != "" {
		t.Errorf("b's status after authenticating again: expired %v, advice %q", st.Expired, st.Advice)
	}
}
