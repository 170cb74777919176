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
	return newNodeClock(t, name, ip, port, dir, nil)
}

// newNodeClock is newNode with a clock of the test's.
func newNodeClock(t *testing.T, name, ip string, port int, dir string, now func() time.Time) *testNode {
	t.Helper()
	n := newNodeAt(t, name, ip, port, dir, now)
	t.Cleanup(n.close)
	return n
}

// newNodeAt starts an agent and leaves stopping it to the caller.
func newNodeAt(t *testing.T, name, ip string, port int, dir string, now func() time.Time) *testNode {
	key := keyOf(name)
	if dir == "" {
		dir = t.TempDir()
	}
	a, err := Open(Options{Dir: dir, Key: key, Self: netip.MustParseAddr(ip), Port: port, Now: now})
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
	for _, c := range []struct{ keyKnown, update bool }{{true, false}, {false, false}, {true, true}} {
		keyKnown := c.keyKnown
		t.Run(fmt.Sprintf("key known %t, UpdatePeers %t", keyKnown, c.update), func(t *testing.T) {
			a, b := pair2(t)
			set := func(peers []api.Peer) {
				if !c.update {
					a.SetPeers(ctx, peers)
				} else if len(peers) == 0 {
					a.UpdatePeers(ctx, nil, []string{b.asPeer().NodeID})
				} else {
					a.UpdatePeers(ctx, peers, nil)
				}
			}
			if keyKnown {
				if res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`)); res.Verdict != Delivered {
					t.Fatalf("first send: %+v, %v", res, err)
				}
			}
			set(nil) // beta goes offline
			res, err := a.Send(ctx, "beta", "message", json.RawMessage(`"while away"`))
			if err != nil || res.Verdict != Queued || !strings.Contains(res.Reason, "offline") {
				t.Fatalf("send to an offline peer = %+v, %v; want queued", res, err)
			}
			if (res.EventID != "") != keyKnown {
				t.Errorf("event_id %q with the key known: %t", res.EventID, keyKnown)
			}
			set([]api.Peer{b.asPeer()}) // back
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
	code, msg, err := a.call(ctx, b.asPeerOf(a), pathEvents, raw, &r)
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

// withMallory is alpha and beta, who know each other, and mallory, whom
// neither knows yet.
func withMallory(t *testing.T) (a, b, m *testNode) {
	t.Helper()
	port := freePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	a = newNode(t, "alpha", "127.0.0.2", port, "")
	b = newNode(t, "beta", "127.0.0.3", port, "")
	m = newNode(t, "mallory", "127.0.0.4", port, "")
	mesh(t, a, b)
	return a, b, m
}

func TestRefusals(t *testing.T) {
	a, b, m := withMallory(t)
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
}

// TestRateLimit: past a sender's burst (with no time passing, so no
// refill), the receiver says "later", and the sender queues.
func TestRateLimit(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	frozen := time.Now()
	a := newNode(t, "alpha", "127.0.0.2", port, "")
	b := newNodeClock(t, "beta", "127.0.0.3", port, "", func() time.Time { return frozen })
	mesh(t, a, b)
	verdicts := map[string]int{}
	reasons := map[string]int{}
	for range eventBurst + 50 {
		res, err := a.Send(ctx, "beta", "message", json.RawMessage(`1`))
		verdicts[res.Verdict]++
		reasons[res.Reason]++
		if res.Verdict == "" {
			t.Errorf("no verdict: %v", err)
		}
	}
	t.Logf("reasons: %v", reasons)
	if verdicts[Delivered] != eventBurst || verdicts[Queued] != 50 {
		t.Errorf("verdicts of a burst past the limit: %v; want %d delivered, the rest queued", verdicts, eventBurst)
	}
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
	code, msg, _ := a.call(ctx, b.asPeerOf(a), pathEvents, raw, &deliveryReply{})
	if code != 403 || !strings.Contains(msg, "verified with another identity key") {
		t.Errorf("impostor's event: %d %q; want refused", code, msg)
	}
}

// TestVerifiedNameTaken: after alpha is verified, the server introduces
// another node (another node_id and key) under alpha's name. It is not
// taken for alpha: beta raises the alarm, refuses its events and will not
// send to it.
func TestVerifiedNameTaken(t *testing.T) {
	a, b, m := withMallory(t)
	if err := b.store.pin(ctx, "id-alpha", keyString(a), time.Now()); err != nil {
		t.Fatal(err)
	}
	impostor := m.asPeer()
	impostor.NodeName = "alpha"
	b.SetPeers(ctx, []api.Peer{impostor})
	m.SetPeers(ctx, []api.Peer{b.asPeer()})
	waitListening(t, m)

	trust, _ := b.Trust(ctx)
	if got := trust["id-mallory"]; got.Tier != Introduced || !strings.Contains(got.KeyAlert, "another identity key for alpha") {
		t.Errorf("b's trust in the new alpha: %+v", got)
	}
	if got := trust["id-alpha"]; got.Tier != Verified || got.IdentityKey != keyString(a) {
		t.Errorf("b's trust in the real alpha: %+v", got)
	}
	if res, err := m.Send(ctx, "beta", "message", json.RawMessage(`"i am alpha"`)); err == nil || !strings.Contains(res.Reason, "another identity key") {
		t.Errorf("the impostor's send = %+v, %v; want refused", res, err)
	}
	if res, err := b.Send(ctx, "alpha", "message", json.RawMessage(`"hi"`)); err == nil || !strings.Contains(err.Error(), "another identity key") {
		t.Errorf("b's send to the new alpha = %+v, %v; want refused", res, err)
	}
	if in, _ := b.Tail(ctx, TailQuery{}); len(in.Events) != 0 {
		t.Errorf("b took events: %+v", in.Events)
	}
}

// TestQueuedInOrderAndExpiry: events queued for an offline peer arrive in
// the order they were sent; one that waits past queueFor fails, and says
// why.
func TestQueuedInOrderAndExpiry(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	clock := &fakeClock{now: time.Now()}
	a := newNodeClock(t, "alpha", "127.0.0.2", port, "", clock.Now)
	b := newNode(t, "beta", "127.0.0.3", port, "")
	mesh(t, a, b)
	a.Send(ctx, "beta", "message", json.RawMessage(`0`)) // learns beta's key
	a.SetPeers(ctx, nil)
	for i := 1; i <= 5; i++ {
		if res, _ := a.Send(ctx, "beta", "message", json.RawMessage(fmt.Sprint(i))); res.Verdict != Queued {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	a.SetPeers(ctx, []api.Peer{b.asPeer()})
	waitFor(t, "the queue drained", func() bool {
		in, _ := b.Tail(ctx, TailQuery{})
		return len(in.Events) == 6
	})
	in, _ := b.Tail(ctx, TailQuery{})
	for i, e := range in.Events {
		if string(e.Body) != fmt.Sprint(i) {
			t.Errorf("event %d has body %s: out of order", i, e.Body)
		}
	}

	a.SetPeers(ctx, nil)
	res, _ := a.Send(ctx, "beta", "message", json.RawMessage(`"too late"`))
	clock.add(queueFor + 2*time.Minute)
	waitFor(t, "the event to expire", func() bool {
		sent, _ := a.Tail(ctx, TailQuery{Sent: true})
		last := sent.Events[len(sent.Events)-1]
		return last.Seq == res.Seq && last.Status == Failed && strings.Contains(last.Reason, "not reachable")
	})
}
