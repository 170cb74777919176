package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// A child process of the test binary plays the receiving daemon, so that
// it can be killed outright.
func TestMain(m *testing.M) {
	if spec := os.Getenv("WIRE_AGENT_RECEIVER"); spec != "" {
		receive(spec)
		return
	}
	os.Exit(m.Run())
}

// receive runs beta's agent, which knows alpha, until it is killed.
func receive(spec string) {
	var dir string
	var port int
	fmt.Sscanf(spec, "%s %d", &dir, &port)
	t := &testing.T{}
	b := newNodeAt(t, "beta", "127.0.0.3", port, dir, nil)
	a := &testNode{name: "alpha", ip: mustAddr("127.0.0.2"), key: keyOf("alpha")}
	b.SetPeers(context.Background(), []apiPeer{a.asPeer()})
	fmt.Println("ready")
	signal.Ignore(syscall.SIGTERM)
	select {}
}

// TestKilledReceiverLosesNothing kills the receiving agent with SIGKILL in
// the middle of a burst: every event acknowledged as delivered must be in
// its inbox when it comes back.
func TestKilledReceiverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	dir := t.TempDir()
	a := newNode(t, "alpha", "127.0.0.2", port, "")
	b := &testNode{name: "beta", ip: mustAddr("127.0.0.3"), key: keyOf("beta")}
	a.SetPeers(ctx, []apiPeer{b.asPeer()})

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "WIRE_AGENT_RECEIVER="+dir+" "+strconv.Itoa(port))
	out, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("receiver did not start: %q %v", buf, err)
	}
	waitAddr(t, b.name, b.ip, port)

	// Four senders at once, so that the kill lands with requests in
	// flight, not between them.
	var mu sync.Mutex
	delivered := map[string]bool{}
	verdicts := map[string]int{}
	var senders sync.WaitGroup
	for w := range 4 {
		senders.Go(func() {
			for i := range 200 {
				res, _ := a.Send(ctx, "beta", "message", json.RawMessage(strconv.Itoa(w*1000+i)))
				mu.Lock()
				verdicts[res.Verdict]++
				if res.Verdict == Delivered {
					delivered[res.EventID] = true
				}
				enough := verdicts[Queued] > 20
				if len(delivered) >= 150 {
					child.Process.Signal(syscall.SIGKILL)
				}
				mu.Unlock()
				if enough {
					return
				}
			}
		})
	}
	senders.Wait()
	child.Process.Signal(syscall.SIGKILL) // in case the senders stopped first
	child.Wait()
	t.Logf("verdicts: %v", verdicts)
	if verdicts[Delivered] < 100 || verdicts[Queued] == 0 || verdicts[Failed] != 0 {
		t.Fatalf("verdicts %v: want deliveries before the kill and queued events after, none failed", verdicts)
	}
	// The receiver's store after the crash, as its next start finds it.
	again, err := Open(Options{Dir: dir, Key: keyOf("beta"), Self: b.ip, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	in, err := again.Tail(ctx, TailQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, e := range in.Events {
		held[e.Event.EventID] = true
	}
	lost := 0
	for id := range delivered {
		if !held[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d events acknowledged as delivered are not in the inbox after the crash", lost, len(delivered))
	}
}
