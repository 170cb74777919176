package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/wg"
)

// PingResult is what `wire ping` prints and `wire_ping` returns.
type PingResult struct {
	Target   string      `json:"target"`
	NodeName string      `json:"node_name"`
	VPNIP    string      `json:"vpn_ip"`
	Path     string      `json:"path"`
	Sent     int         `json:"sent"`
	Received int         `json:"received"`
	Replies  []PingReply `json:"replies"`
}

// PingReply is one echo request's outcome.
type PingReply struct {
	Seq   int     `json:"seq"`
	RTTMs float64 `json:"rtt_ms"`
	// Endpoint is where WireGuard reached the peer as the reply came:
	// its direct endpoint, or "relay".
	Endpoint string `json:"endpoint,omitempty"`
	// Lost says no reply came within the timeout; only a stream of
	// replies (PingStream) has these, PingResult.Replies does not.
	Lost bool `json:"lost,omitempty"`
}

// PathSelf is the path of a ping to this node itself.
const PathSelf = "self"

// Errors of Ping that callers branch on.
var (
	// ErrUnknownPeer says a ping target is neither a peer's name nor
	// address.
	ErrUnknownPeer = errors.New("no such peer")
	// ErrPeerOffline says a ping target is a node of the mesh that is not
	// online, so not a peer of this node's WireGuard.
	ErrPeerOffline = errors.New("offline")
)

// Ping sends count ICMP echo requests over the tunnel to a peer named by
// name (in any case) or VPN address, or to this node itself, a second
// apart, each waiting up to timeout; each, if not nil, hears of every
// request's outcome as it comes.
func (d *Daemon) Ping(ctx context.Context, target string, count int, timeout time.Duration, each func(PingReply)) (PingResult, error) {
	p, ok := d.resolve(target)
	if !ok {
		return PingResult{}, d.whyNotPeer(ctx, target)
	}
	if each == nil {
		each = func(PingReply) {}
	}
	res := PingResult{Target: target, NodeName: p.NodeName, VPNIP: p.VPNIP, Replies: []PingReply{}}
	conn, err := icmp.ListenPacket("ip4:icmp", d.cfg.VPNIP)
	if err != nil {
		return res, fmt.Errorf("opening an ICMP socket on %s: %w", d.cfg.VPNIP, err)
	}
	defer conn.Close()
	dst := &net.IPAddr{IP: net.ParseIP(p.VPNIP)}
	id := os.Getpid() & 0xffff
	for seq := 1; seq <= count && ctx.Err() == nil; seq++ {
		if seq > 1 {
			sleep(ctx, time.Second)
		}
		res.Sent++
		rtt, err := echo(ctx, conn, dst, id, seq, timeout)
		if err != nil {
			each(PingReply{Seq: seq, Lost: true})
			continue
		}
		r := PingReply{Seq: seq, RTTMs: float64(rtt.Microseconds()) / 1000, Endpoint: d.endpointOf(p.WGPublicKey)}
		res.Received++
		res.Replies = append(res.Replies, r)
		each(r)
	}
	res.Path = PathSelf
	if p.VPNIP != d.cfg.VPNIP {
		res.Path = d.pathTo(p.WGPublicKey)
	}
	return res, ctx.Err()
}

// endpointOf is where WireGuard reaches the peer with key now: its
// endpoint, or "relay"; "" for this node itself or an unknown key.
func (d *Daemon) endpointOf(wgKey string) string {
	key, err := wgtypes.ParseKey(wgKey)
	if err != nil {
		return ""
	}
	ep := d.live()[key].Endpoint
	if _, relayed := wg.IsRelayEndpoint(ep); relayed {
		return PathRelay
	}
	if !ep.IsValid() {
		return ""
	}
	return ep.String()
}

func echo(ctx context.Context, conn *icmp.PacketConn, dst *net.IPAddr, id, seq int, timeout time.Duration) (time.Duration, error) {
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("wire ping")}}
	b, _ := msg.Marshal(nil)
	start := time.Now()
	if _, err := conn.WriteTo(b, dst); err != nil {
		return 0, err
	}
	deadline := start.Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		if from.String() != dst.String() {
			continue
		}
		reply, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || reply.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := reply.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return time.Since(start), nil
		}
	}
}

func (d *Daemon) pathTo(wgKey string) string {
	live := d.live()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.peers {
		if p.WGPublicKey == wgKey {
			return d.peerStatus(p, live).Path
		}
	}
	return PathNone
}

// whyNotPeer says why target is not a peer: a node that is offline (the
// server still lists it), or no node at all.
func (d *Daemon) whyNotPeer(ctx context.Context, target string) error {
	srv, err := d.serverStatus(ctx)
	if err == nil {
		for _, n := range srv.Nodes {
			if strings.EqualFold(n.NodeName, target) || n.VPNIP == target {
				return fmt.Errorf("%s (%s) is %w: last seen %s ago", n.NodeName, n.VPNIP, ErrPeerOffline, time.Duration(n.LastSeenAgo)*time.Second)
			}
		}
	}
	return fmt.Errorf("%w %q (see wire status)", ErrUnknownPeer, target)
}
