//go:build linux

package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
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
	m, n1, n2 := twoNATedNodes(t)

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
	pairOverMCP(t, call1, call2)
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

// twoNATedNodes is a mesh of two nodes, each behind a cone NAT of its
// own, that ping each other.
func twoNATedNodes(t *testing.T) (*mesh, *node, *node) {
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	n1 := m.up(l.NodeBehind(r1, "n1", "192.168.1.10"), "n1")
	n2 := m.up(l.NodeBehind(r2, "n2", "192.168.2.10"), "n2")
	m.waitPairs(meshTimeout, n1, n2)
	return m, n1, n2
}

// pairOverMCP pairs the nodes of two MCP sessions: the first initiates,
// the second joins, and each confirms the digits the other shows, as two
// people reading them to each other would.
func pairOverMCP(t *testing.T, call1, call2 toolCall) {
	t.Helper()
	who2 := call2("wire_whoami", nil)
	offer := call1("wire_pair_initiate", map[string]any{"peer": who2["node_name"]})
	code, _ := offer["code"].(string)
	joined := call2("wire_pair_join", map[string]any{"code": code})
	check := call1("wire_pair_check", map[string]any{"session_id": offer["session_id"]})
	if joined["state"] != "sas_ready" || check["state"] != "sas_ready" || joined["sas"] != check["sas"] {
		t.Fatalf("pairing: initiator %v, joiner %v; want both sas_ready with the same digits", check, joined)
	}
	call1("wire_pair_confirm", map[string]any{"session_id": offer["session_id"], "digits": joined["sas"]})
	done := call2("wire_pair_confirm", map[string]any{"session_id": offer["session_id"], "digits": check["sas"]})
	if done["state"] != "done" {
		t.Fatalf("joiner after both confirmed: %v", done)
	}
	if st := call1("wire_pair_check", map[string]any{"session_id": offer["session_id"]}); st["state"] != "done" {
		t.Fatalf("initiator after both confirmed: %v", st)
	}
}

// TestAgentsPeerKeyChanged: after n1 and n2 have paired, n1 is
// re-installed (removed from the server, its state wiped, joined again
// with a new identity key under its old name and node_id). n2 keeps the
// verified key, says so in wire status, wire peers and wire_peers, and
// refuses messages both ways.
func TestAgentsPeerKeyChanged(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cs1, call1 := mcpSession(t, ctx, n1, nil)
	_, call2 := mcpSession(t, ctx, n2, nil)
	pairOverMCP(t, call1, call2)
	cs1.Close()

	if _, err := wire(n1.ns, "down", "--state-dir", n1.dir); err != nil {
		t.Fatal(err)
	}
	n1.proc.Wait(10 * time.Second)
	if _, err := wire(m.srvNS, "server", "node", "remove", "--state-dir", m.srvDir, "n1"); err != nil {
		t.Fatal(err)
	}
	// The running server takes the admin's change from its store within a
	// second or so; until then the node_id is still n1's.
	if err := lab.Poll(20*time.Second, 200*time.Millisecond, func() error {
		st, err := n2.status()
		if _, listed := st.peer("n1"); err == nil && listed {
			return errString("n1 still listed")
		}
		return err
	}); err != nil {
		t.Fatalf("n1 not removed: %v", err)
	}
	if err := os.RemoveAll(n1.dir); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(n1.dir, 0o755)
	n1.proc = lab.Start(t, n1.ns, "n1", append([]string{wireBin, "up", "--foreground", "--server", serverURL, "--join", m.key,
		"--name", "n1", "--interface", n1.iface, "--state-dir", n1.dir}, nodeFlags()...)...)
	m.waitUp(n1)
	m.waitPairs(meshTimeout, n1, n2) // the tunnel is the server's business: it works

	var alert string
	err := lab.Poll(30*time.Second, 200*time.Millisecond, func() error {
		peers := call2("wire_peers", nil)["peers"].([]any)
		if len(peers) == 1 {
			p := peers[0].(map[string]any)
			alert, _ = p["key_alert"].(string)
			if alert != "" && p["tier"] == "verified" {
				return nil
			}
		}
		return errString("no key alert yet")
	})
	if err != nil {
		t.Fatalf("n2 after n1 came back with another key: %v", err)
	}
	t.Logf("n2 says: %s", alert)
	out, err := wire(n2.ns, "status", "--state-dir", n2.dir)
	if err != nil || !strings.Contains(out, "WARNING: the coordination server now presents another identity key for n1") {
		t.Errorf("wire status on n2 does not warn: %v\n%s", err, out)
	}
	if out, _ := wire(n2.ns, "peers", "--state-dir", n2.dir); !strings.Contains(out, "WARNING") {
		t.Errorf("wire peers on n2 does not warn:\n%s", out)
	}
	if !strings.Contains(n2.proc.Output(), "IDENTITY KEY CHANGED") {
		t.Errorf("n2's log says nothing of the changed key")
	}
	_, stderr, err := wireOut(n1.ns, 20*time.Second, "send", "--state-dir", n1.dir, "n2", "it is me, really")
	if err == nil || !strings.Contains(stderr, "verified with another identity key") {
		t.Errorf("the new n1's message to n2: %v %s; want refused", err, stderr)
	}
	_, stderr, err = wireOut(n2.ns, 20*time.Second, "send", "--state-dir", n2.dir, "n1", "who are you?")
	if err == nil || !strings.Contains(stderr, "addressed to another identity key") {
		t.Errorf("n2's message to the new n1: %v %s; want refused", err, stderr)
	}
	t.Cleanup(func() {
		wire(n1.ns, "down", "--state-dir", n1.dir)
		wire(n2.ns, "down", "--state-dir", n2.dir)
	})
}

// TestAgentsReceiverKilled: the receiving daemon is SIGKILLed while events
// pour in from the other node (four senders at once, over MCP); after it
// restarts, every event acknowledged as delivered is in its inbox, and
// those queued meanwhile arrive too.
func TestAgentsReceiverKilled(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cs1, call1 := mcpSession(t, ctx, n1, nil)

	var mu sync.Mutex
	delivered := map[string]bool{}
	verdicts := map[string]int{}
	var senders sync.WaitGroup
	for w := range 4 {
		senders.Go(func() {
			for i := range 150 {
				res, err := cs1.CallTool(ctx, &sdk.CallToolParams{Name: "wire_send",
					Arguments: map[string]any{"peer": "n2", "body": map[string]any{"n": w*1000 + i}}})
				mu.Lock()
				switch {
				case err != nil || res.IsError:
					verdicts["error"]++
				default:
					out := res.StructuredContent.(map[string]any)
					v, _ := out["verdict"].(string)
					verdicts[v]++
					if v == "delivered" {
						delivered[out["event_id"].(string)] = true
					}
				}
				if len(delivered) == 60 && !n2.proc.Exited() {
					n2.proc.Kill()
				}
				stop := verdicts["queued"] >= 8
				mu.Unlock()
				if stop {
					return
				}
			}
		})
	}
	senders.Wait()
	t.Logf("verdicts: %v", verdicts)
	if verdicts["delivered"] < 60 || verdicts["queued"] == 0 || verdicts["error"] != 0 {
		t.Fatalf("verdicts %v: want deliveries before the kill, queued after, no errors", verdicts)
	}
	m.restart(n2)
	m.waitUp(n2)
	err := lab.Poll(60*time.Second, 250*time.Millisecond, func() error {
		out := call1("wire_tail", map[string]any{"sent": true, "limit": 1000})
		for _, e := range out["events"].([]any) {
			if e.(map[string]any)["status"] == "queued" {
				return errString("events still queued")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after n2's restart: %v", err)
	}
	out, err := wire(n2.ns, "tail", "--json", "--limit", "1000", "--state-dir", n2.dir)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Event struct {
				EventID string `json:"event_id"`
			} `json:"event"`
		}
		json.Unmarshal([]byte(line), &e)
		held[e.Event.EventID] = true
	}
	lost := 0
	for id := range delivered {
		if !held[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d events acknowledged as delivered are missing from n2's inbox after the kill", lost, len(delivered))
	}
	if want := verdicts["delivered"] + verdicts["queued"]; len(held) != want {
		t.Errorf("n2 holds %d events; %d were delivered or queued", len(held), want)
	}
	t.Cleanup(func() { wire(n2.ns, "down", "--state-dir", n2.dir) })
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

// pairCLI is a `wire pair` run with its terminal: its output is read
// line by line, and the digits are typed into its input.
type pairCLI struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startPairCLI(t *testing.T, ctx context.Context, n *node, args ...string) *pairCLI {
	t.Helper()
	cmd := lab.Command(ctx, n.ns, append([]string{wireBin, "pair", "--state-dir", n.dir}, args...)...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pairCLI{cmd: cmd, in: in, lines: make(chan string, 64)}
	go func() {
		// Lines, and the digits prompt, which ends in ": " and no newline.
		sc := bufio.NewScanner(out)
		sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				return i + 1, data[:i+1], nil
			}
			if bytes.HasSuffix(data, []byte(": ")) {
				return len(data), data, nil
			}
			if atEOF && len(data) > 0 {
				return len(data), data, nil
			}
			return 0, nil, nil
		})
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// until returns the first output line matching re's group, failing the
// test if the command ends first.
func (p *pairCLI) until(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var seen []string
	for line := range p.lines {
		seen = append(seen, line)
		if m := re.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			return m[len(m)-1]
		}
	}
	t.Fatalf("wire pair ended without printing %v:\n%s", re, strings.Join(seen, ""))
	return ""
}

// TestPairCLI: two people pair their nodes with wire pair and wire pair
// join, each typing the digits the other's screen shows; a second round
// with wrong digits aborts both, and the peers stay as they were.
func TestPairCLI(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)
	_ = m
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	codeRE := regexp.MustCompile(`^(\d+-[a-z]+-[a-z]+)$`)
	digitsRE := regexp.MustCompile(`Read these digits to the person at \S+:\s+(\d{3} \d{3})`)
	verifiedRE := regexp.MustCompile(`(is verified)`)

	for _, round := range []string{"right digits", "wrong digits"} {
		a := startPairCLI(t, ctx, n1, "n2")
		code := a.until(t, codeRE)
		b := startPairCLI(t, ctx, n2, "join", code)
		sasA, sasB := a.until(t, digitsRE), b.until(t, digitsRE)
		if sasA != sasB {
			t.Fatalf("%s: the screens show %s and %s", round, sasA, sasB)
		}
		typed := sasA
		if round == "wrong digits" {
			typed = "000 001"
			if sasA == typed {
				typed = "000 002"
			}
		}
		fmt.Fprintln(a.in, typed)
		fmt.Fprintln(b.in, sasA)
		if round == "right digits" {
			a.until(t, verifiedRE)
			b.until(t, verifiedRE)
			if err := a.cmd.Wait(); err != nil {
				t.Errorf("wire pair: %v", err)
			}
			continue
		}
		for _, p := range []*pairCLI{a, b} {
			for range p.lines {
			}
			if err := p.cmd.Wait(); err == nil {
				t.Errorf("wire pair with the wrong digits typed on one side exited 0")
			}
		}
	}
	out, _ := wire(n1.ns, "peers", "--state-dir", n1.dir)
	if !strings.Contains(out, "verified") {
		t.Errorf("wire peers on n1 after pairing:\n%s", out)
	}
}
