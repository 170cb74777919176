package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

// testNode is an agent on a loopback address of its own, standing in for
// a node's VPN address.
type testNode struct {
	*Agent
	name string
	ip   netip.Addr
	key  ed25519.PrivateKey
	stop context.CancelFunc
	done chan struct{}
}

// freePort finds a port free on every address given.
func freePort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		free := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0
}

type apiPeer = api.Peer

func keyOf(name string) ed25519.PrivateKey {
	seed := make([]byte, 32)
	copy(seed, name)
	return ed25519.NewKeyFromSeed(seed)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func newNode(t *testing.T, name, ip string, port int, dir string) *testNode {
	t.Helper()
	n := newNodeAt(t, name, ip, port, dir)
	t.Cleanup(n.close)
	return n
}

// newNodeAt starts an agent and leaves stopping it to the caller.
func newNodeAt(t *testing.T, name, ip string, port int, dir string) *testNode {
	key := keyOf(name)
	if dir == "" {
		dir = t.TempDir()
	}
	a, err := Open(Options{Dir: dir, Key: key, Self: netip.MustParseAddr(ip), Port: port})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{Agent: a, name: name, ip: netip.MustParseAddr(ip), key: key, stop: cancel, done: make(chan struct{})}
	go func() { a.Serve(ctx); close(n.done) }()
	return n
}

func (n *testNode) close() {
	if n.stop == nil {
		return
	}
	n.stop()
	<-n.done
	n.Agent.Close()
	n.stop = nil
}

// asPeer is n as the coordination server lists it.
func (n *testNode) asPeer() api.Peer {
	pin, _ := api.KeyPin(n.key.Public())
	return api.Peer{NodeID: "id-" + n.name, NodeName: n.name, VPNIP: n.ip.String(), NodeKey: pin.String()}
}

// mesh introduces every node to every other, and waits for each to listen.
func mesh(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		var peers []api.Peer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.asPeer())
			}
		}
		n.SetPeers(context.Background(), peers)
	}
	for _, n := range nodes {
		waitListening(t, n)
	}
}

func waitListening(t *testing.T, n *testNode) {
	t.Helper()
	waitAddr(t, n.name, n.ip, n.opts.Port)
}

func waitAddr(t *testing.T, name string, ip netip.Addr, port int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's agent does not listen: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pair2(t *testing.T) (a, b *testNode) {
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	a = newNode(t, "alpha", "127.0.0.2", port, "")
	b = newNode(t, "beta", "127.0.0.3", port, "")
	mesh(t, a, b)
	return a, b
}

var ctx = context.Background()

func TestSendTailVerify(t *testing.T) {
	a, b := pair2(t)
	res, err := a.Send(ctx, "BETA", "message", json.RawMessage(`{"text":"hello"}`))
	if err != nil || res.Verdict != Delivered || res.EventID == "" {
		t.Fatalf("Send = %+v, %v; want delivered", res, err)
	}
	tail, err := b.Tail(ctx, TailQuery{})
	if err != nil || len(tail.Events) != 1 {
		t.Fatalf("b's inbox: %+v, %v", tail, err)
	}
	got := tail.Events[0]
	if !got.Verified || got.Peer != "alpha" || got.Tier != Introduced || got.Event.EventID != res.EventID || string(got.Body) != `{"text":"hello"}` {
		t.Errorf("b's inbox entry = %+v", got)
	}
	raw, _ := json.Marshal(got.Event)
	v, err := b.Verify(ctx, raw)
	if err != nil || !v.Valid || v.Signer != "alpha" || v.Tier != Introduced || !v.Known {
		t.Errorf("b verifies a's event: %+v, %v", v, err)
	}
	tampered := strings.Replace(string(raw), "hello", "HELLO", 1)
	if v, _ := b.Verify(ctx, []byte(tampered)); v.Valid || !strings.Contains(v.Error, "event_id") {
		t.Errorf("tampered event: %+v, want invalid", v)
	}
	if v, _ := a.Verify(ctx, raw); !v.Valid || v.Tier != "self" {
		t.Errorf("a verifies its own event: %+v", v)
	}
	sent, _ := a.Tail(ctx, TailQuery{Sent: true})
	if len(sent.Events) != 1 || sent.Events[0].Status != Delivered || sent.Events[0].Direction != "out" || !sent.Events[0].Verified {
		t.Errorf("a's sent events: %+v", sent.Events)
	}
	if in, _ := a.Tail(ctx, TailQuery{}); len(in.Events) != 0 {
		t.Errorf("a's inbox holds its own sent event: %+v", in.Events)
	}
}

func TestQueuedUntilPeerReturns(t *testing.T) {
	for _, keyKnown := range []bool{true, false} {
		t.Run(fmt.Sprintf("key known %t", keyKnown), func(t *testing.T) {
			a, b := pair2(t)
			if keyKnown {
				if res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`)); res.Verdict != Delivered {
					t.Fatalf("first send: %+v, %v", res, err)
				}
			}
			a.SetPeers(ctx, nil) // beta goes offline
			res, err := a.Send(ctx, "beta", "message", json.RawMessage(`"while away"`))
			if err != nil || res.Verdict != Queued || !strings.Contains(res.Reason, "offline") {
				t.Fatalf("send to an offline peer = %+v, %v; want queued", res, err)
			}
			if (res.EventID != "") != keyKnown {
				t.Errorf("event_id %q with the key known: %t", res.EventID, keyKnown)
			}
			a.SetPeers(ctx, []api.Peer{b.asPeer()}) // back
			waitFor(t, "the queued event delivered", func() bool {
				sent, _ := a.Tail(ctx, TailQuery{Sent: true})
				last := sent.Events[len(sent.Events)-1]
				return last.Status == Delivered && last.Verified && last.Event != nil
			})
			in, _ := b.Tail(ctx, TailQuery{})
			if last := in.Events[len(in.Events)-1]; string(last.Body) != `"while away"` || !last.Verified {
				t.Errorf("b got %+v", last)
			}
		})
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDuplicatesSuppressed(t *testing.T) {
	a, b := pair2(t)
	res, _ := a.Send(ctx, "beta", "message", json.RawMessage(`"once"`))
	sent, _ := a.Tail(ctx, TailQuery{Sent: true})
	raw, _ := json.Marshal(sent.Events[0].Event)
	var r deliveryReply
	code, msg, err := a.post(ctx, b.asPeerOf(a), pathEvents, raw, &r)
	if err != nil || code != 200 || !r.Duplicate {
		t.Fatalf("resending %s: %d %q %v %+v; want a duplicate acknowledged", res.EventID, code, msg, err, r)
	}
	in, _ := b.Tail(ctx, TailQuery{})
	if len(in.Events) != 1 {
		t.Errorf("b holds %d copies", len(in.Events))
	}
}

// asPeerOf is n as other sees it.
func (n *testNode) asPeerOf(other *testNode) api.Peer {
	p, _ := other.isOnline("id-" + n.name)
	return p
}

func TestRefusals(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	a := newNode(t, "alpha", "127.0.0.2", port, "")
	b := newNode(t, "beta", "127.0.0.3", port, "")
	m := newNode(t, "mallory", "127.0.0.4", port, "")
	mesh(t, a, b)
	m.SetPeers(ctx, []api.Peer{b.asPeer()}) // b does not know m
	waitListening(t, m)

	t.Run("not a peer", func(t *testing.T) {
		res, err := m.Send(ctx, "beta", "message", json.RawMessage(`1`))
		if !errors.Is(err, ErrSend) || res.Verdict != Failed || !strings.Contains(res.Reason, "only peers") {
			t.Errorf("send from a non-peer = %+v, %v", res, err)
		}
	})
	t.Run("input", func(t *testing.T) {
		big, _ := json.Marshal(strings.Repeat("x", event.MaxSize))
		if _, err := a.Send(ctx, "beta", "message", big); !errors.Is(err, event.ErrTooLarge) {
			t.Errorf("big body: %v", err)
		}
		if _, err := a.Send(ctx, "beta", "Bad Kind", json.RawMessage(`1`)); err == nil || !strings.Contains(err.Error(), "kind") {
			t.Errorf("bad kind: %v", err)
		}
		if _, err := a.Send(ctx, "gamma", "message", json.RawMessage(`1`)); !errors.Is(err, ErrUnknownPeer) {
			t.Errorf("unknown peer: %v", err)
		}
		if sent, _ := a.Tail(ctx, TailQuery{Sent: true}); len(sent.Events) != 0 {
			t.Errorf("refused input was stored: %+v", sent.Events)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		// The server vouches for another key than the one a signs with.
		impostor := a.asPeer()
		impostor.NodeKey = m.asPeer().NodeKey
		b.SetPeers(ctx, []api.Peer{impostor})
		defer b.SetPeers(ctx, []api.Peer{a.asPeer()})
		res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`))
		if err == nil || res.Verdict != Failed || !strings.Contains(res.Reason, "not the identity key") {
			t.Errorf("send with a key the server does not vouch for = %+v, %v", res, err)
		}
	})
	t.Run("blocked", func(t *testing.T) {
		if _, err := b.Block(ctx, "alpha", true); err != nil {
			t.Fatal(err)
		}
		res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`))
		if err == nil || !strings.Contains(res.Reason, "blocked") {
			t.Errorf("send to a node that blocked us = %+v, %v", res, err)
		}
		b.Block(ctx, "alpha", false)
		if res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`)); res.Verdict != Delivered {
			t.Errorf("after unblocking: %+v, %v", res, err)
		}
		a.Block(ctx, "beta", true)
		if res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`)); err == nil {
			t.Errorf("send to a peer we blocked = %+v", res)
		}
		a.Block(ctx, "beta", false)
	})
	t.Run("rate limit", func(t *testing.T) {
		verdicts := map[string]int{}
		for range eventBurst + 50 {
			res, _ := a.Send(ctx, "beta", "message", json.RawMessage(`1`))
			verdicts[res.Verdict]++
		}
		if verdicts[Queued] == 0 || verdicts[Failed] != 0 {
			t.Errorf("verdicts of a burst past the limit: %v; want some queued, none failed", verdicts)
		}
	})
}

func TestVerifiedKeyChanged(t *testing.T) {
	a, b := pair2(t)
	aKey := event.EncodeKey(a.key.Public().(ed25519.PublicKey))
	if err := b.store.pin(ctx, "id-alpha", aKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The server now says alpha has another key (a MITM's).
	seed := make([]byte, 32)
	copy(seed, "impostor")
	impostor := ed25519.NewKeyFromSeed(seed)
	pin, _ := api.KeyPin(impostor.Public())
	swapped := a.asPeer()
	swapped.NodeKey = pin.String()
	b.SetPeers(ctx, []api.Peer{swapped})
	trust, _ := b.Trust(ctx)
	if got := trust["id-alpha"]; got.Tier != Verified || got.IdentityKey != aKey || !strings.Contains(got.KeyAlert, "another identity key") {
		t.Errorf("b's trust in alpha after the swap: %+v", got)
	}
	// Events by the pinned key still pass; the impostor's do not.
	if res, err := a.Send(ctx, "beta", "message", json.RawMessage(`"real"`)); res.Verdict != Delivered {
		t.Errorf("pinned key's event: %+v, %v", res, err)
	}
	e, _ := event.New(impostor, b.key.Public().(ed25519.PublicKey), "message", json.RawMessage(`"fake"`), time.Now())
	raw, _ := json.Marshal(e)
	code, msg, _ := a.post(ctx, b.asPeerOf(a), pathEvents, raw, &deliveryReply{})
	if code != 403 || !strings.Contains(msg, "verified with another identity key") {
		t.Errorf("impostor's event: %d %q; want refused", code, msg)
	}
}
