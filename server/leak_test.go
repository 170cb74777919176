package server_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/wire-mesh/wire/server/servertest"
)

// checkGoroutines waits a little for the goroutine count to drop back to
// before, and fails with every goroutine's stack if it does not.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// A server that stops leaves no goroutine behind: not its listeners'
// nor its housekeeping's, nor a long-poll's that was waiting.
func TestServerLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	env := servertest.Start(t, "")
	n, c, _ := enrol(t, env, "a")
	c.Register(ctx, register("a", n, nil))
	full, _ := c.Peers(ctx, "0", 0)
	polled := make(chan error, 1)
	go func() { _, err := c.Peers(ctx, full.Version, 20*time.Second); polled <- err }()
	time.Sleep(100 * time.Millisecond)
	c.Relay(ctx)
	env.Client(t, nil).Health(ctx)
	env.Stop()
	select {
	case <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("a long-poll still waits after the server stopped")
	}
	c.CloseIdle()
	checkGoroutines(t, before)
}
