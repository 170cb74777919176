package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

var ctx = context.Background()

func register(name string, n servertest.Node, key *api.JoinKey) api.RegisterRequest {
	req := api.RegisterRequest{NodeID: "id-" + name, NodeName: name, WGPublicKey: n.WGKey, Port: 51820, NATPort: 40000, LANIP: "192.168.1.10"}
	if key != nil {
		req.JoinKey = key.String()
	}
	return req
}

// enrol joins a fresh node and returns its identity and client.
func enrol(t *testing.T, env *servertest.Env, name string) (servertest.Node, *api.Client, api.RegisterResponse) {
	t.Helper()
	n := servertest.NewNode(t)
	c := env.Client(t, &n)
	k := env.Key(t, false)
	resp, err := c.Register(ctx, register(name, n, &k))
	if err != nil {
		t.Fatalf("enrol %s: %v", name, err)
	}
	return n, c, resp
}

func statusCode(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestEnrolAndHeartbeat(t *testing.T) {
	env := servertest.Start(t, "")
	n, c, resp := enrol(t, env, "node1")
	if !resp.OK || resp.VPNIP == "" || resp.YourIP != "127.0.0.1" || resp.Subnet != "10.99.0.0/16" {
		t.Fatalf("register response = %+v", resp)
	}
	// A heartbeat needs no key and keeps the address.
	again, err := c.Register(ctx, register("node1", n, nil))
	if err != nil || again.VPNIP != resp.VPNIP {
		t.Fatalf("heartbeat = %+v, %v; want vpn_ip %s", again, err, resp.VPNIP)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.NodeStatus{{NodeName: "node1", VPNIP: resp.VPNIP, PublicIP: "127.0.0.1", NATPort: 40000, Status: "online"}}
	if diff := cmp.Diff(want, st.Nodes); diff != "" || st.Total != 1 || st.Online != 1 {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestJoinKeyErrors(t *testing.T) {
	env := servertest.Start(t, "")
	used := env.Key(t, false)
	enrolWith := func(k api.JoinKey) error {
		n := servertest.NewNode(t)
		_, err := env.Client(t, &n).Register(ctx, register(fmt.Sprintf("n%d", time.Now().UnixNano()), n, &k))
		return err
	}
	if err := enrolWith(used); err != nil {
		t.Fatal(err)
	}
	expired, err := env.CreateKey(ctx, false, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := env.Key(t, false)
	wrongSecret.Secret = used.Secret
	tests := []struct {
		name string
		key  api.JoinKey
		want string
	}{
		{"used", used, "already used"},
		{"expired", expired, "expired"},
		{"wrong secret", wrongSecret, "not valid"},
		{"unknown id", api.JoinKey{ID: "aaaaaaaa", Secret: used.Secret, Pin: used.Pin}, "not valid"},
	}
	for _, tt := range tests {
		err := enrolWith(tt.key)
		if statusCode(err) != http.StatusUnauthorized || !contains(err, tt.want) {
			t.Errorf("%s key: err = %v, want 401 %q", tt.name, err, tt.want)
		}
	}
	// Without a key and not enrolled: 401 that says to join.
	n := servertest.NewNode(t)
	if _, err := env.Client(t, &n).Register(ctx, register("nokey", n, nil)); statusCode(err) != 401 || !contains(err, "not enrolled") {
		t.Errorf("no key: err = %v", err)
	}
}

func contains(err error, s string) bool {
	return err != nil && len(s) > 0 && strings.Contains(err.Error(), s)
}

func TestSingleUseKeyConcurrent(t *testing.T) {
	env := servertest.Start(t, "")
	ok, used := raceKey(t, env.Key(t, false), env)
	if ok != 1 || used != 49 {
		t.Fatalf("50 enrolments with one single-use key: %d succeeded, %d refused as used; want 1 and 49", ok, used)
	}
}

// raceKey enrols 50 nodes at once with key, through envs in turn, and
// counts those that succeed and those refused because it was used.
func raceKey(t *testing.T, k api.JoinKey, envs ...*servertest.Env) (ok, used int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 50 {
		wg.Go(func() {
			n := servertest.NewNode(t)
			_, err := envs[i%len(envs)].Client(t, &n).Register(ctx, register(fmt.Sprintf("racer%d", i), n, &k))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case contains(err, "already used"):
				used++
			default:
				t.Errorf("racer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	return ok, used
}

func TestReusableKey(t *testing.T) {
	env := servertest.Start(t, "")
	k := env.Key(t, true)
	seen := map[string]bool{}
	for i := range 5 {
		n := servertest.NewNode(t)
		resp, err := env.Client(t, &n).Register(ctx, register(fmt.Sprintf("r%d", i), n, &k))
		if err != nil {
			t.Fatal(err)
		}
		if seen[resp.VPNIP] {
			t.Fatalf("duplicate address %s", resp.VPNIP)
		}
		seen[resp.VPNIP] = true
	}
}

func TestNodesCannotTouchOthers(t *testing.T) {
	env := servertest.Start(t, "")
	a, _, _ := enrol(t, env, "alice")
	b, cb, _ := enrol(t, env, "bob")
	tests := []struct {
		name string
		req  api.RegisterRequest
		code int
	}{
		{"take over alice's node_id", api.RegisterRequest{NodeID: "id-alice", NodeName: "bob", WGPublicKey: b.WGKey, Port: 1}, 403},
		{"claim alice's WireGuard key", api.RegisterRequest{NodeID: "id-bob", NodeName: "bob", WGPublicKey: a.WGKey, Port: 1}, 409},
		{"rename to alice", api.RegisterRequest{NodeID: "id-bob", NodeName: "alice", WGPublicKey: b.WGKey, Port: 1, Rename: true}, 409},
	}
	for _, tt := range tests {
		if _, err := cb.Register(ctx, tt.req); statusCode(err) != tt.code {
			t.Errorf("%s: err = %v, want %d", tt.name, err, tt.code)
		}
	}
	// A new node with a valid key cannot enrol under alice's node_id either.
	n := servertest.NewNode(t)
	k := env.Key(t, false)
	req := register("mallory", n, &k)
	req.NodeID = "id-alice"
	if _, err := env.Client(t, &n).Register(ctx, req); statusCode(err) != 409 {
		t.Errorf("enrol with alice's node_id: err = %v, want 409", err)
	}
	// Alice's record is untouched.
	st, _ := env.Admin(t).Status(ctx)
	for _, ns := range st.Nodes {
		if ns.NodeName == "mallory" {
			t.Errorf("mallory was enrolled: %+v", st.Nodes)
		}
	}
	// Punching on alice's behalf is refused.
	if _, err := cb.Punch(ctx, api.PunchRequest{FromVPNIP: "10.99.0.1", ToVPNIP: "10.99.0.2"}); statusCode(err) != 403 {
		t.Errorf("punch as another node: err = %v, want 403", err)
	}
}

func TestAuthRequired(t *testing.T) {
	env := servertest.Start(t, "")
	anon := env.Client(t, nil)
	if _, err := anon.Health(ctx); err != nil {
		t.Errorf("/health needs no credentials: %v", err)
	}
	if _, err := anon.Status(ctx); statusCode(err) != 401 {
		t.Errorf("/status without credentials: err = %v, want 401", err)
	}
	if _, err := anon.Peers(ctx, "", 0); statusCode(err) != 401 {
		t.Errorf("/peers without credentials: err = %v, want 401", err)
	}
	stranger := servertest.NewNode(t)
	if _, err := env.Client(t, &stranger).Status(ctx); statusCode(err) != 401 {
		t.Errorf("/status with an unenrolled key: err = %v, want 401", err)
	}
	bad, _ := api.NewClient(api.ClientConfig{URL: env.URL(), Pin: env.Identity().Pin, AdminToken: "nope"})
	if _, err := bad.Status(ctx); statusCode(err) != 401 {
		t.Errorf("/status with a wrong admin token: err = %v, want 401", err)
	}
	if _, err := env.Admin(t).Status(ctx); err != nil {
		t.Errorf("/status as admin: %v", err)
	}
}

func TestPinMismatch(t *testing.T) {
	env := servertest.Start(t, "")
	other := servertest.Start(t, "")
	n := servertest.NewNode(t)
	k := env.Key(t, false)
	// A client that pins env's key but reaches another server (as a man
	// in the middle would be) refuses before sending anything.
	c, _ := api.NewClient(api.ClientConfig{URL: other.URL(), Pin: k.Pin, Cert: &n.Cert})
	_, err := c.Register(ctx, register("n", n, &k))
	if !errors.Is(err, api.ErrPinMismatch) {
		t.Fatalf("err = %v, want ErrPinMismatch", err)
	}
	if st, _ := other.Admin(t).Status(ctx); st.Total != 0 {
		t.Errorf("impostor server got a registration")
	}
}

func TestPeersLongPollDelta(t *testing.T) {
	env := servertest.Start(t, "")
	_, c1, _ := enrol(t, env, "one")
	full, err := c1.Peers(ctx, "0", 0)
	if err != nil || !full.Full || len(full.Peers) != 1 || full.Version == "" {
		t.Fatalf("first peers = %+v, %v", full, err)
	}
	// A long-poll returns as soon as a peer joins, with only that peer.
	type result struct {
		resp api.PeersResponse
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := c1.Peers(ctx, full.Version, 10*time.Second)
		done <- result{r, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond)
	joined := time.Now()
	_, c2, r2 := enrol(t, env, "two")
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if lag := res.at.Sub(joined); lag > time.Second {
		t.Errorf("peer change reached the long-poll after %v, want < 1s", lag)
	}
	if res.resp.Full || len(res.resp.Peers) != 1 || res.resp.Peers[0].NodeName != "two" || res.resp.Peers[0].VPNIP != r2.VPNIP {
		t.Errorf("delta = %+v, want just node two", res.resp)
	}
	// Nothing changed: the poll waits out its time and returns no peers.
	start := time.Now()
	idle, err := c2.Peers(ctx, res.resp.Version, 300*time.Millisecond)
	if err != nil || len(idle.Peers) != 0 || idle.Version != res.resp.Version || time.Since(start) < 250*time.Millisecond {
		t.Errorf("idle poll = %+v, %v after %v", idle, err, time.Since(start))
	}
	// An unknown version (say, from before a server restart) gets the full set.
	stale, err := c2.Peers(ctx, "deadbeef.3", 0)
	if err != nil || !stale.Full || len(stale.Peers) != 2 {
		t.Errorf("stale version: %+v, %v", stale, err)
	}
}

func TestPunchCounts(t *testing.T) {
	env := servertest.Start(t, "")
	_, c1, r1 := enrol(t, env, "one")
	_, _, r2 := enrol(t, env, "two")
	for i := 1; i <= 3; i++ {
		resp, err := c1.Punch(ctx, api.PunchRequest{FromVPNIP: r1.VPNIP, ToVPNIP: r2.VPNIP})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Attempts != i || resp.UseRelay != (i >= 3) {
			t.Errorf("attempt %d: %+v", i, resp)
		}
	}
	if _, err := c1.Punch(ctx, api.PunchRequest{FromVPNIP: r1.VPNIP, ToVPNIP: "10.99.250.250"}); statusCode(err) != 404 {
		t.Errorf("punch to nobody: %v, want 404", err)
	}
}

func TestRestartKeepsAddresses(t *testing.T) {
	dir := t.TempDir()
	env := servertest.Start(t, dir)
	n, _, resp := enrol(t, env, "keep")
	env.Stop()
	env2 := servertest.Start(t, dir)
	again, err := env2.Client(t, &n).Register(ctx, register("keep", n, nil))
	if err != nil || again.VPNIP != resp.VPNIP {
		t.Fatalf("after restart: %+v, %v; want %s", again, err, resp.VPNIP)
	}
}

// After a restart, a node whose map the new run loaded is sent what
// changed since, not the whole map again.
func TestRestartSendsOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	env := servertest.Start(t, dir)
	na, ca, _ := enrol(t, env, "a")
	nb, _, _ := enrol(t, env, "b")
	enrol(t, env, "c")
	before, err := ca.Peers(ctx, "0", 0)
	if err != nil || len(before.Peers) != 3 {
		t.Fatalf("first poll: %+v, %v", before, err)
	}
	env.Stop()

	env2 := servertest.Start(t, dir)
	ca = env2.Client(t, &na)
	resp, err := ca.Peers(ctx, before.Version, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Full || len(resp.Peers)+len(resp.Removed) != 0 || resp.Version == before.Version {
		t.Fatalf("after the restart: %+v, want no change and a new version", resp)
	}
	// The next change, and a poll from the old run's version still
	// gets only that.
	hb := register("b", nb, nil)
	hb.NATPort = 40001
	if _, err := env2.Client(t, &nb).Register(ctx, hb); err != nil {
		t.Fatal(err)
	}
	for _, since := range []string{before.Version, resp.Version} {
		d, err := ca.Peers(ctx, since, 0)
		if err != nil || d.Full || len(d.Peers) != 1 || d.Peers[0].NodeName != "b" || d.Peers[0].NATPort != 40001 {
			t.Errorf("since %s: %+v, %v; want b's move alone", since, d, err)
		}
	}
	// A digest the new run never held gets the whole map.
	epoch, _, _ := strings.Cut(before.Version, ".")
	forged := epoch + ".1." + strings.Repeat("0", 32)
	if d, err := ca.Peers(ctx, forged, 0); err != nil || !d.Full || len(d.Peers) != 3 {
		t.Errorf("since an unknown map: %+v, %v; want the whole map", d, err)
	}
}

// A node's TLS session resumes after the server restarts (the ticket keys
// come from the server's key), and the resumed session still says which
// node it is.
func TestSessionResumesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	env := servertest.Start(t, dir)
	n, _, _ := enrol(t, env, "a")
	cfg := api.PinnedTLS(env.Identity().Pin, &n.Cert)
	cfg.ServerName = "wire" // the session cache's key, whatever the port
	get := func(env *servertest.Env) (resumed bool) {
		t.Helper()
		u, _ := url.Parse(env.URL())
		c, err := tls.Dial("tcp", u.Host, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req, _ := http.NewRequest("GET", env.URL()+api.PathPeers+"?since=0", nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /peers as the node: %s", resp.Status)
		}
		return c.ConnectionState().DidResume
	}
	if get(env) {
		t.Fatal("the first handshake resumed a session")
	}
	env.Stop()
	env2 := servertest.Start(t, dir)
	if !get(env2) {
		t.Error("after the restart the session did not resume")
	}
	other := servertest.Start(t, t.TempDir()) // another mesh: another key
	u, _ := url.Parse(other.URL())
	if _, err := tls.Dial("tcp", u.Host, cfg); !errors.Is(err, api.ErrPinMismatch) {
		t.Errorf("another server, with the cached session: %v, want the pin refused", err)
	}
}

// The server tells nodes that it counts long-polls as signs of life, so
// they may heartbeat less often.
func TestRegisterAsksForFewerHeartbeats(t *testing.T) {
	env := servertest.Start(t, "")
	_, _, resp := enrol(t, env, "node1")
	if resp.HeartbeatEvery != int(api.PollHeartbeat/time.Second) {
		t.Errorf("heartbeat_every = %d, want %d", resp.HeartbeatEvery, int(api.PollHeartbeat/time.Second))
	}
}
