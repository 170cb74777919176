//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wire-mesh/wire/lab"
)

// TestAgentsOverMCP: two assistants, each driving `wire mcp` on its own
// node behind its own NAT, exchange signed events over the tunnel: send,
// the subscription push, tail, verify (and a tampered copy failing), and
// an event for an offline peer queued, then delivered when it is back.
func TestAgentsOverMCP(t *testing.T) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	m.waitPairs(meshTimeout, n1, n2)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	_, call1 := mcpSession(t, ctx, n1, nil)
	updated := make(chan string, 16)
	cs2, call2 := mcpSession(t, ctx, n2, &sdk.ClientOptions{ResourceUpdatedHandler: func(_ context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
		updated <- r.Params.URI
	}})
	if err := cs2.Subscribe(ctx, &sdk.SubscribeParams{URI: "wire://inbox/all"}); err != nil {
		t.Fatalf("subscribe to n2's inbox: %v", err)
	}

	who := call1("wire_whoami", nil)
	if key, _ := who["identity_key"].(string); !strings.HasPrefix(key, "ed25519:") || who["messaging"] != "on" {
		t.Fatalf("n1's wire_whoami: %v", who)
	}
	start := time.Now()
	sent := call1("wire_send", map[string]any{"peer": "n2", "kind": "message", "body": map[string]any{"text": "hello from n1"}})
	if sent["verdict"] != "delivered" {
		t.Fatalf("wire_send to n2: %v, want delivered", sent)
	}
	select {
	case uri := <-updated:
		t.Logf("n2's subscriber heard of the event %v after the send began (%s)", time.Since(start).Round(time.Millisecond), uri)
		if time.Since(start) > 2*time.Second {
			t.Errorf("the push took %v; want it within a second of arrival", time.Since(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("n2's subscriber heard nothing of the event")
	}

	tail := call2("wire_tail", map[string]any{"peer": "n1"})
	events, _ := tail["events"].([]any)
	if len(events) != 1 {
		t.Fatalf("n2's wire_tail: %v", tail)
	}
	got := events[0].(map[string]any)
	if got["verified"] != true || got["tier"] != "introduced" || got["peer"] != "n1" || got["body"].(map[string]any)["text"] != "hello from n1" {
		t.Errorf("n2's inbox entry: %v", got)
	}
	ev := got["event"].(map[string]any)
	if ev["event_id"] != sent["event_id"] {
		t.Errorf("event ids: sent %v, received %v", sent["event_id"], ev["event_id"])
	}
	v := call2("wire_verify", map[string]any{"event": ev})
	if v["valid"] != true || v["signer"] != "n1" || v["tier"] != "introduced" {
		t.Errorf("n2's wire_verify: %v", v)
	}
	raw, _ := json.Marshal(ev)
	tampered := strings.Replace(string(raw), "hello from n1", "hello from n3", 1)
	if v := call2("wire_verify", map[string]any{"event": tampered}); v["valid"] != false {
		t.Errorf("a tampered event verifies: %v", v)
	}

	// n2 goes away; n1's event waits in its outbox, then reaches n2.
	if _, err := wire(n2.ns, "down", "--state-dir", n2.dir); err != nil {
		t.Fatal(err)
	}
	n2.proc.Wait(10 * time.Second)
	waitStatus(t, n1, "n2", "offline")
	queued := call1("wire_send", map[string]any{"peer": "n2", "body": map[string]any{"text": "while you were away"}})
	if queued["verdict"] != "queued" {
		t.Fatalf("wire_send to offline n2: %v, want queued", queued)
	}
	m.restart(n2)
	m.waitUp(n2)
	err := lab.Poll(60*time.Second, 250*time.Millisecond, func() error {
		out := call1("wire_tail", map[string]any{"sent": true, "since": sent["seq"]})
		for _, e := range out["events"].([]any) {
			e := e.(map[string]any)
			if e["status"] == "delivered" && e["seq"] == queued["seq"] {
				return nil
			}
		}
		return errString("not delivered yet")
	})
	if err != nil {
		t.Fatalf("the queued event: %v", err)
	}
	in := call2("wire_tail", nil)
	last := in["events"].([]any)[len(in["events"].([]any))-1].(map[string]any)
	if last["body"].(map[string]any)["text"] != "while you were away" || last["verified"] != true {
		t.Errorf("n2's newest event after coming back: %v", last)
	}
	t.Cleanup(func() { wire(n2.ns, "down", "--state-dir", n2.dir) })

	// The two people pair their nodes, each typing the digits the other
	// reads out; then each node holds the other as verified.
	offer := call1("wire_pair_initiate", map[string]any{"peer": "n2"})
	code, _ := offer["code"].(string)
	joined := call2("wire_pair_join", map[string]any{"code": code})
	check := call1("wire_pair_check", map[string]any{"session_id": offer["session_id"]})
	if joined["state"] != "sas_ready" || check["state"] != "sas_ready" || joined["sas"] != check["sas"] {
		t.Fatalf("pairing: n1 %v, n2 %v; want both sas_ready with the same digits", check, joined)
	}
	call1("wire_pair_confirm", map[string]any{"session_id": offer["session_id"], "digits": joined["sas"]})
	done := call2("wire_pair_confirm", map[string]any{"session_id": offer["session_id"], "digits": check["sas"]})
	if done["state"] != "done" {
		t.Fatalf("n2 after both confirmed: %v", done)
	}
	for _, side := range []struct {
		call toolCall
		peer string
	}{{call1, "n2"}, {call2, "n1"}} {
		peers := side.call("wire_peers", nil)["peers"].([]any)
		if len(peers) != 1 || peers[0].(map[string]any)["tier"] != "verified" {
			t.Errorf("wire_peers after pairing: %v; want %s verified", peers, side.peer)
		}
	}
	after := call1("wire_send", map[string]any{"peer": "n2", "body": map[string]any{"text": "now verified"}})
	if after["verdict"] != "delivered" {
		t.Fatalf("send after pairing: %v", after)
	}
	in = call2("wire_tail", map[string]any{"limit": 1})
	if e := in["events"].([]any)[0].(map[string]any); e["tier"] != "verified" || e["verified"] != true {
		t.Errorf("n2's newest event after pairing: %v", e)
	}
}

// waitStatus waits until n's status shows peer in the given state.
func waitStatus(t *testing.T, n *node, peer, want string) {
	t.Helper()
	err := lab.Poll(30*time.Second, 200*time.Millisecond, func() error {
		st, err := n.status()
		if err != nil {
			return err
		}
		if p, ok := st.peer(peer); ok && p.Status != want {
			return errString(peer + " is " + p.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s does not see %s %s: %v", n.name, peer, want, err)
	}
}
