package node

import (
	"context"

	"github.com/vishvananda/netlink"
)

// netChanges delivers a signal when this machine's addresses or routes
// change (a laptop changing networks), so the daemon rediscovers its NAT
// mapping at once rather than at the next period.
func netChanges(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 16)
	routes := make(chan netlink.RouteUpdate, 16)
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		return nil
	}
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		close(done)
		return nil
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-addrs:
			case <-routes:
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}
