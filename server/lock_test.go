package server_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/server/servertest"
)

// within runs f and fails the test if it has not returned after d; it
// returns f's error.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Errorf("%s: still waiting after %v", what, d)
		return nil
	}
}

// /health is public: it must cost O(1) and never wait for the registry,
// which a flood of it would otherwise hold from enrolled nodes.
func TestHealthDoesNotTakeTheRegistry(t *testing.T) {
	env := servertest.Start(t, "")
	enrol(t, env, "a")
	release := env.HoldRegistry()
	defer release()
	var h api.Health
	err := within(t, 5*time.Second, "/health with the registry locked", func() (err error) {
		h, err = env.Client(t, nil).Health(ctx)
		return err
	})
	if err != nil || h.Total != 1 || h.Online != 1 {
		t.Errorf("health = %+v, %v; want 1 node, 1 online", h, err)
	}
}

// While a store write waits for SQLite's lock (another process holds it,
// or the disk is slow), relayed packets, long-polls, heartbeats and
// /health must not wait with it.
func TestNoStoreWaitUnderTheRegistryLock(t *testing.T) {
	env := servertest.Start(t, "")
	_, ca, ra := enrol(t, env, "a")
	nb, cb, _ := enrol(t, env, "b")
	creds, err := ca.Relay(ctx)
	if err != nil {
		t.Fatal(err)
	}

	n := servertest.NewNode(t)
	k := env.Key(t, false)

	// Another process takes the write lock and keeps it.
	tx, err := openRaw(t, env.Dir).Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO meta VALUES ('held', 'by the test')`); err != nil {
		t.Fatal(err)
	}
	enrolled := make(chan error, 1)
	go func() { // an enrolment, which must write before it is acknowledged
		_, err := env.Client(t, &n).Register(ctx, register("c", n, &k))
		enrolled <- err
	}()
	time.Sleep(300 * time.Millisecond) // it reaches the store and waits there

	within(t, 5*time.Second, "relay HELLO", func() error {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		conn, err := relay.NewConn(pc, relay.Config{Relay: netip.MustParseAddrPort(env.RelayAddr().String()), VPNIP: netip.MustParseAddr(ra.VPNIP), Token: creds.Token})
		if err != nil {
			return err
		}
		defer conn.Close()
		go func() { // acks arrive through reads
			buf := make([]byte, 2048)
			for {
				if _, _, err := conn.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		hctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		defer cancel()
		if err := conn.Hello(hctx); err != nil {
			t.Errorf("relay HELLO while the store is locked: %v", err)
		}
		return nil
	})
	within(t, 5*time.Second, "long-poll", func() error {
		if _, err := cb.Peers(ctx, "0", 0); err != nil {
			t.Errorf("/peers while the store is locked: %v", err)
		}
		return nil
	})
	within(t, 5*time.Second, "heartbeat", func() error {
		if _, err := cb.Register(ctx, register("b", nb, nil)); err != nil {
			t.Errorf("heartbeat while the store is locked: %v", err)
		}
		return nil
	})
	within(t, 5*time.Second, "/health", func() error {
		_, err := env.Client(t, nil).Health(ctx)
		return err
	})
	select {
	case err := <-enrolled:
		t.Fatalf("the enrolment returned (%v) while the store was locked", err)
	default:
	}
	tx.Rollback()
	if err := <-enrolled; err != nil {
		t.Errorf("the enrolment, once the lock was free: %v", err)
	}
}

// A made-up join key learns nothing: whether a name, node_id or WireGuard
// key exists, the answer is the same 401.
func TestJoinKeyCheckedFirst(t *testing.T) {
	env := servertest.Start(t, "")
	a, _, _ := enrol(t, env, "alice")
	real := env.Key(t, true)
	fake := api.JoinKey{ID: "aaaaaaaa", Secret: real.Secret, Pin: real.Pin}
	expired, err := env.CreateKey(ctx, true, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []api.JoinKey{fake, expired} {
		for _, probe := range []struct {
			name          string
			id, node, key string
		}{
			{"nothing taken", "id-new", "new", ""},
			{"alice's name", "id-new", "alice", ""},
			{"ALICE's name", "id-new", "ALICE", ""},
			{"alice's node_id", "id-alice", "new", ""},
			{"alice's WireGuard key", "id-new", "new", a.WGKey},
		} {
			n := servertest.NewNode(t)
			req := register(probe.node, n, &k)
			req.NodeID = probe.id
			if probe.key != "" {
				req.WGPublicKey = probe.key
			}
			_, err := env.Client(t, &n).Register(ctx, req)
			if statusCode(err) != http.StatusUnauthorized {
				t.Errorf("key %s, %s: err = %v, want 401 as for any other", k.ID, probe.name, err)
			}
		}
	}
	// With a valid key the conflict is named, as before.
	n := servertest.NewNode(t)
	if _, err := env.Client(t, &n).Register(ctx, register("alice", n, &real)); statusCode(err) != http.StatusConflict {
		t.Errorf("valid key, alice's name: err = %v, want 409", err)
	}
}
