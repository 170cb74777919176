package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// An admin renames a node in the store (as `wire server node rename`
// does, while the server runs): its peers' long-polls and its own see the
// new name within a second, and the node's next heartbeat, which still
// carries its old name, does not undo it. A rename the node asks for
// still works.
func TestAdminRenamesANode(t *testing.T) {
	env := servertest.Start(t, "")
	n, c, _ := enrol(t, env, "laptop")
	_, watcher, _ := enrol(t, env, "watcher")
	admin, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	full, err := watcher.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}
	own, err := c.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}

	if was, err := admin.RenameNode(ctx, "LAPTOP", "desk"); err != nil || was != "laptop" {
		t.Fatalf("RenameNode = %q, %v; want laptop renamed", was, err)
	}
	for _, poll := range []struct {
		who     string
		c       *api.Client
		version string
	}{{"its peer", watcher, full.Version}, {"the node itself", c, own.Version}} {
		resp, err := poll.c.Peers(ctx, poll.version, time.Second)
		if err != nil || !hasPeer(resp.Peers, "id-laptop", "desk") {
			t.Errorf("%s's long-poll after the rename: %+v, %v; want laptop as desk within a second", poll.who, resp, err)
		}
	}

	// Its heartbeat with the old name: the server holds the new one, and
	// says so.
	resp, err := c.Register(ctx, register("laptop", n, nil))
	if err != nil || resp.NodeName != "desk" {
		t.Errorf("a heartbeat with the old name = %+v, %v; want node_name desk", resp, err)
	}
	if names := servertest.StoredNames(t, admin); names != "desk watcher" {
		t.Errorf("after the heartbeat the store holds %s, want desk watcher", names)
	}

	// A rename the node asks for.
	ask := register("laptop", n, nil)
	ask.Rename = true
	if resp, err := c.Register(ctx, ask); err != nil || resp.NodeName != "laptop" {
		t.Errorf("a rename the node asks for = %+v, %v; want node_name laptop", resp, err)
	}
	if names := servertest.StoredNames(t, admin); names != "laptop watcher" {
		t.Errorf("after the node's rename the store holds %s", names)
	}
}

// A rename to a taken name, to one that is not a name, or of a node that
// does not exist fails, and changes nothing.
func TestRenameRefusals(t *testing.T) {
	env := servertest.Start(t, "")
	enrol(t, env, "a")
	enrol(t, env, "b")
	admin, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var conflict *server.ErrConflict
	if _, err := admin.RenameNode(ctx, "a", "B"); !errors.As(err, &conflict) || conflict.Field != "node_name" {
		t.Errorf("renaming a to B, which b holds: %v, want a node_name conflict", err)
	}
	if _, err := admin.RenameNode(ctx, "a", "-bad name"); err == nil || !strings.Contains(err.Error(), "want 1 to 63 letters") {
		t.Errorf("renaming a to an invalid name: %v", err)
	}
	if _, err := admin.RenameNode(ctx, "nobody", "c"); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("renaming a node that does not exist: %v, want ErrNotFound", err)
	}
	if names := servertest.StoredNames(t, admin); names != "a b" {
		t.Errorf("after the refusals the store holds %s, want a b", names)
	}
}

// Join keys are listed without their secrets, with what became of them;
// a revoked key admits no node, and the nodes it enrolled stay.
func TestListAndRevokeKeys(t *testing.T) {
	env := servertest.Start(t, "")
	once, reusable := env.Key(t, false), env.Key(t, true)
	n := servertest.NewNode(t)
	if _, err := env.Client(t, &n).Register(ctx, register("first", n, &once)); err != nil {
		t.Fatal(err)
	}
	admin, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	keys, err := admin.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	now := time.Now()
	for _, k := range keys {
		states[k.ID] = k.State(now)
		if k.Expires.Sub(k.Created) != time.Hour {
			t.Errorf("key %s: created %v, expires %v; want an hour apart", k.ID, k.Created, k.Expires)
		}
	}
	if len(keys) != 2 || states[once.ID] != server.KeyUsed || states[reusable.ID] != server.KeyValid {
		t.Errorf("keys %+v; want the single-use key used and the reusable one valid", keys)
	}
	for _, k := range keys {
		if got := k.State(now.Add(2 * time.Hour)); got != server.KeyExpired {
			t.Errorf("key %s two hours on: %s, want expired", k.ID, got)
		}
	}
	listed, _ := json.Marshal(keys)
	for _, secret := range []string{once.Secret, reusable.Secret} {
		if strings.Contains(string(listed), secret) {
			t.Errorf("the list shows a key's secret: %s", listed)
		}
	}

	if err := admin.RevokeKey(ctx, reusable.ID); err != nil {
		t.Fatal(err)
	}
	m := servertest.NewNode(t)
	_, err = env.Client(t, &m).Register(ctx, register("second", m, &reusable))
	if statusCode(err) != 401 {
		t.Errorf("enrolling with a revoked key: %v, want 401", err)
	}
	if err := admin.RevokeKey(ctx, reusable.ID); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("revoking it again: %v, want ErrNotFound", err)
	}
	if names := servertest.StoredNames(t, admin); names != "first" {
		t.Errorf("after the revocation the store holds %s, want first", names)
	}
}

func hasPeer(peers []api.Peer, id, name string) bool {
	for _, p := range peers {
		if p.NodeID == id && p.NodeName == name {
			return true
		}
	}
	return false
}

// clock is a settable time for a server under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A key made with a node expiry admits nodes that must authenticate
// again after it: once expired, a node leaves its peers' maps, every
// request it makes is refused with code node_expired, a heartbeat
// without a key does not bring it back and one with a key does, keeping
// its address. An admin may expire a node at once.
func TestNodeExpiry(t *testing.T) {
	clk := &clock{t: time.Now()}
	env := servertest.Start(t, "", func(c *server.Config) { c.Now = clk.now })
	admin, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	expiring, err := admin.CreateKey(ctx, env.Identity().Pin, server.KeyOptions{Reusable: true, Expires: clk.now().Add(24 * time.Hour), NodeTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n := servertest.NewNode(t)
	c := env.Client(t, &n)
	first, err := c.Register(ctx, register("temp", n, &expiring))
	if err != nil {
		t.Fatal(err)
	}
	_, watcher, _ := enrol(t, env, "watcher")
	listed, _ := admin.List(ctx, clk.now())
	if len(listed) != 2 || listed[0].NodeName != "temp" || listed[0].ExpiresAt != clk.now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Fatalf("the store lists %+v; want temp expiring in an hour", listed)
	}
	full, err := watcher.Peers(ctx, "0", 0)
	if err != nil || !hasPeer(full.Peers, "id-temp", "temp") {
		t.Fatalf("watcher's map %+v, %v; want temp in it", full, err)
	}

	// An hour on, temp has expired, a minute after its last heartbeat (it
	// would count as online for minutes more); watcher has kept polling.
	clk.advance(time.Hour - time.Minute)
	if _, err := c.Register(ctx, register("temp", n, nil)); err != nil {
		t.Fatalf("a heartbeat before the hour is up: %v", err)
	}
	clk.advance(time.Minute + time.Second)
	env.Sweep()
	resp, err := watcher.Peers(ctx, full.Version, time.Second)
	if err != nil || !slices.Contains(resp.Removed, "id-temp") {
		t.Errorf("watcher's poll after temp expired: %+v, %v; want temp removed", resp, err)
	}
	for what, call := range map[string]func() error{
		"its heartbeat": func() error { _, err := c.Register(ctx, register("temp", n, nil)); return err },
		"its poll":      func() error { _, err := c.Peers(ctx, "", 0); return err },
	} {
		err := call()
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != 401 || se.Reason != api.CodeNodeExpired || !strings.Contains(se.Message, "wire up --join KEY") {
			t.Errorf("%s once expired: %v, want 401 node_expired saying what to do", what, err)
		}
	}
	if listed, _ := admin.List(ctx, clk.now()); listed[0].Status != "expired" {
		t.Errorf("the store lists temp as %s, want expired", listed[0].Status)
	}

	// With a key it is back, at its address, for another hour.
	again, err := c.Register(ctx, register("temp", n, &expiring))
	if err != nil || again.VPNIP != first.VPNIP {
		t.Fatalf("authenticating again: %+v, %v; want its address %s", again, err, first.VPNIP)
	}
	if listed, _ := admin.List(ctx, clk.now()); listed[0].Status == "expired" || listed[0].ExpiresAt != clk.now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Errorf("after authenticating again the store lists %+v, want temp expiring in another hour", listed[0])
	}
	keys, _ := admin.Keys(ctx)
	if i := slices.IndexFunc(keys, func(k server.KeyInfo) bool { return k.ID == expiring.ID }); i < 0 || keys[i].Uses != 2 {
		t.Errorf("the key's uses after a new authentication: %+v, want 2", keys)
	}

	// The admin expires it now: it leaves watcher's map within a second.
	since, err := watcher.Peers(ctx, "0", 0)
	if err != nil || !hasPeer(since.Peers, "id-temp", "temp") {
		t.Fatalf("watcher's map %+v, %v; want temp back", since, err)
	}
	if _, err := admin.ExpireNode(ctx, "TEMP", clk.now()); err != nil {
		t.Fatal(err)
	}
	resp, err = watcher.Peers(ctx, since.Version, time.Second)
	if err != nil || !slices.Contains(resp.Removed, "id-temp") {
		t.Errorf("watcher's poll after the admin expired temp: %+v, %v; want temp removed within a second", resp, err)
	}
	if _, err := c.Peers(ctx, "", 0); !strings.Contains(fmt.Sprint(err), "expired") {
		t.Errorf("temp's poll after the admin expired it: %v", err)
	}
	if _, err := admin.ExpireNode(ctx, "nobody", clk.now()); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("expiring a node that does not exist: %v", err)
	}
}

// What a node says of itself for the admin (its version, the peers it
// reaches through the relay) shows in the server's Mesh, and a list of
// relayed peers that is not one is refused.
func TestMeshShowsWhatNodesSay(t *testing.T) {
	env := servertest.Start(t, "")
	n, c, _ := enrol(t, env, "a")
	enrol(t, env, "b")
	hb := register("a", n, nil)
	hb.Version, hb.Relayed = "v1.2.3", []string{"id-b"}
	if _, err := c.Register(ctx, hb); err != nil {
		t.Fatal(err)
	}
	m := env.Mesh()
	if len(m.Nodes) != 2 || m.Nodes[0].NodeName != "a" || m.Nodes[0].Version != "v1.2.3" || !slices.Equal(m.Nodes[0].Relayed, []string{"id-b"}) || !m.Nodes[0].Online {
		t.Errorf("Mesh() = %+v; want a at v1.2.3, relaying to b", m)
	}
	many := make([]string, api.MaxRelayed+1)
	for i := range many {
		many[i] = fmt.Sprintf("id-%d", i)
	}
	for _, bad := range [][]string{{"not an id!"}, many} {
		hb.Relayed = bad
		if _, err := c.Register(ctx, hb); statusCode(err) != 400 {
			t.Errorf("relayed %d entries (%.20q...): %v, want 400", len(bad), bad[0], err)
		}
	}
}
