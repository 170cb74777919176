package server_test

import (
	"encoding/json"
	"errors"
	"strings"
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
	if names := storedNames(t, admin); names != "desk watcher" {
		t.Errorf("after the heartbeat the store holds %s, want desk watcher", names)
	}

	// A rename the node asks for.
	ask := register("laptop", n, nil)
	ask.Rename = true
	if resp, err := c.Register(ctx, ask); err != nil || resp.NodeName != "laptop" {
		t.Errorf("a rename the node asks for = %+v, %v; want node_name laptop", resp, err)
	}
	if names := storedNames(t, admin); names != "laptop watcher" {
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
	if names := storedNames(t, admin); names != "a b" {
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
	if names := storedNames(t, admin); names != "first" {
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

// storedNames are the names of the nodes in the store, sorted, as `wire
// server nodes` lists them.
func storedNames(t *testing.T, s *server.Store) string {
	t.Helper()
	nodes, err := s.List(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.NodeName)
	}
	return strings.Join(names, " ")
}
