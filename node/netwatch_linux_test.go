package node

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/internal/roottest"
)

// TestNetChanges watches a network namespace of its own: bringing its
// loopback up (which adds its addresses' routes) is signalled.
func TestNetChanges(t *testing.T) {
	roottest.Need(t, "to create a network namespace")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var changes <-chan struct{}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the namespace, with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if changes = netChanges(ctx); changes == nil {
			errc <- errors.New("netChanges returned nil")
			return
		}
		c, err := rtnetlink.Dial(nil)
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- c.Link.Set(&rtnetlink.LinkMessage{Index: 1, Flags: unix.IFF_UP, Change: unix.IFF_UP}) // lo
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled after lo came up")
	}
}
