//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/wire-mesh/wire/lab"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// stockNet is the stock pair's own subnet, apart from wire's 10.99/16.
const stockNet = "10.98.0.0/24"

// stockEnd is one end of a stock wireguard-go tunnel: the upstream
// binary, one process per node, configured over its UAPI socket.
type stockEnd struct {
	ns    *lab.NS // a node behind a router
	iface string
	port  int        // listen port; a free one keeps its number through the router's masquerade
	ip    netip.Addr // in stockNet
	key   wgtypes.Key
	proc  *lab.Proc
}

// endpoint is where the other end sends: the router's WAN address and
// the port the masquerade maps the listen port to.
func (e *stockEnd) endpoint() *net.UDPAddr {
	return &net.UDPAddr{IP: e.ns.Router.IP.AsSlice(), Port: e.port}
}

// newStockEnd names an end. The UAPI socket /var/run/wireguard/IFACE.sock
// is shared by all namespaces, so the interface name carries this
// process's pid: two runs on one machine do not collide.
func newStockEnd(t lab.T, ns *lab.NS, n int, ip string) *stockEnd {
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return &stockEnd{
		ns: ns, iface: fmt.Sprintf("wgb%d-%d", os.Getpid()%100000, n), port: 51900 + n,
		ip: netip.MustParseAddr(ip), key: key,
	}
}

// startStock runs wireguard-go in the foreground for each end, waits for
// its UAPI socket, configures both ends as each other's peer (endpoints
// through the routers), addresses the interfaces and punches the path.
func startStock(ctx context.Context, t lab.T, bin string, a, b *stockEnd) {
	c, err := wgctrl.New()
	if err != nil {
		t.Fatalf("wgctrl: %v", err)
	}
	defer c.Close()
	for _, e := range []*stockEnd{a, b} {
		sock := "/var/run/wireguard/" + e.iface + ".sock"
		t.Cleanup(func() { os.Remove(sock) }) // runs after the process is stopped
		e.proc = lab.Start(t, e.ns, "wireguard-go-"+e.ns.Short, "env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", bin, "-f", e.iface)
	}
	for _, pair := range [][2]*stockEnd{{a, b}, {b, a}} {
		e, peer := pair[0], pair[1]
		err := lab.Poll(10*time.Second, 20*time.Millisecond, func() error {
			if e.proc.Exited() {
				return lab.Abort(fmt.Errorf("wireguard-go %s exited: %v\n%s", e.iface, e.proc.Wait(0), e.proc.Tail(10)))
			}
			_, err := c.Device(e.iface)
			return err
		})
		if err != nil {
			t.Fatalf("in %s: wireguard-go %s: %v", e.ns, e.iface, err)
		}
		if err := c.ConfigureDevice(e.iface, stockConfig(e, peer)); err != nil {
			t.Fatalf("in %s: configuring %s over UAPI: %v", e.ns, e.iface, err)
		}
		for _, args := range [][]string{
			{"ip", "addr", "add", netip.PrefixFrom(e.ip, 24).String(), "dev", e.iface},
			{"ip", "link", "set", e.iface, "up"},
		} {
			if _, err := lab.Run(e.ns, args...); err != nil {
				t.Fatalf("%v", err)
			}
		}
	}
	if err := punch(ctx, a, b); err != nil {
		t.Fatalf("stock wireguard-go: %v", err)
	}
}

// stockConfig is e's whole configuration, with peer as its one peer.
func stockConfig(e, peer *stockEnd) wgtypes.Config {
	keepalive := 25 * time.Second
	return wgtypes.Config{
		PrivateKey:   &e.key,
		ListenPort:   &e.port,
		ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{{
			PublicKey:                   peer.key.PublicKey(),
			Endpoint:                    peer.endpoint(),
			PersistentKeepaliveInterval: &keepalive,
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  []net.IPNet{{IP: peer.ip.AsSlice(), Mask: net.CIDRMask(32, 32)}},
		}},
	}
}

// punch pings from both ends at once until both are answered: each
// router drops the other's first packets until its own node has sent.
func punch(ctx context.Context, a, b *stockEnd) error {
	return lab.Poll(20*time.Second, 100*time.Millisecond, func() error {
		if ctx.Err() != nil {
			return lab.Abort(ctx.Err())
		}
		var errs [2]error
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = a.ns.Ping(b.ip.String()) })
		wg.Go(func() { errs[1] = b.ns.Ping(a.ip.String()) })
		wg.Wait()
		return errors.Join(errs[:]...)
	})
}
