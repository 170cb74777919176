package node

import (
	"context"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netChanges delivers a signal when this machine's addresses or routes
// change (a laptop changing networks), so the daemon rediscovers its NAT
// mapping at once rather than at the next period. It returns nil if it
// cannot listen for them.
func netChanges(ctx context.Context) <-chan struct{} {
	groups := uint32(unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	c, err := rtnetlink.Dial(&netlink.Config{Groups: groups})
	if err != nil {
		return nil
	}
	out := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, func() { c.Close() }) // ends Receive
	go func() {
		for {
			if _, _, err := c.Receive(); err != nil {
				if stop() { // not closed for ctx: a failure
					c.Close()
				}
				return
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}
