package wg

import (
	"fmt"
	"runtime"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
)

// namespace is the network namespace an engine lives in. Sockets belong
// to the namespace of the thread that creates them, and wireguard-go
// creates its UDP sockets on whichever thread brings the device up or
// changes its port (the TUN event goroutine, a caller of Set), so the
// engine creates them through run. The zero namespace runs functions
// where they are called.
type namespace struct {
	handle netns.NsHandle
	ok     bool
}

// currentNamespace opens the network namespace of the calling thread.
func currentNamespace() (namespace, error) {
	h, err := netns.Get()
	if err != nil {
		return namespace{}, fmt.Errorf("wg: open the current network namespace: %w", err)
	}
	return namespace{handle: h, ok: true}, nil
}

// run calls fn on a thread of its own inside n. The thread is never
// unlocked, so it exits with its goroutine and no other goroutine ever
// runs in n by accident.
func (n namespace) run(fn func() error) error {
	if !n.ok {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.handle); err != nil {
			done <- fmt.Errorf("wg: enter the engine's network namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// netlink opens an rtnetlink connection in n, usable from any thread.
func (n namespace) netlink() (*rtnetlink.Conn, error) {
	if !n.ok {
		return rtnetlink.Dial(nil)
	}
	return rtnetlink.Dial(&netlink.Config{NetNS: int(n.handle)})
}

func (n namespace) close() {
	if n.ok {
		n.handle.Close()
	}
}
