package wg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/relay/relaytest"
	"golang.zx2c4.com/wireguard/conn"
)

func TestRelayEndpoint(t *testing.T) {
	vpn := netip.MustParseAddr("10.99.1.2")
	ep := RelayEndpoint(vpn)
	if ep.String() != "[100::a63:102]:1" {
		t.Errorf("RelayEndpoint = %v", ep)
	}
	if got, ok := IsRelayEndpoint(ep); !ok || got != vpn {
		t.Errorf("IsRelayEndpoint(%v) = %v, %v", ep, got, ok)
	}
	for _, s := range []string{"10.99.1.2:1", "[2001:db8::1]:1", "[100:0:0:1::1]:1"} {
		if _, ok := IsRelayEndpoint(netip.MustParseAddrPort(s)); ok {
			t.Errorf("IsRelayEndpoint(%s) = true", s)
		}
	}
}

// relayConn joins n to the relay r as its VPN address.
func relayConn(t *testing.T, r *relaytest.Relay, n *node) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := relay.NewConn(pc, relay.Config{Relay: r.Addr, VPNIP: n.addr, Token: r.Tokens.Add(n.addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n.SetRelay(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelThroughRelay: two engines whose peers have relay endpoints
// talk through a real relay, and move to the direct path when told.
func TestTunnelThroughRelay(t *testing.T) {
	r := relaytest.Serve(t)
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	relayConn(t, r, a)
	relayConn(t, r, b)
	cfgA, cfgB := a.config(false, b), b.config(false, a)
	cfgA.Peers[0].Endpoint, cfgB.Peers[0].Endpoint = RelayEndpoint(b.addr), RelayEndpoint(a.addr)
	if err := a.Set(cfgA); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(cfgB); err != nil {
		t.Fatal(err)
	}
	ping(t, a, b)
	ping(t, b, a)
	if got := peerOf(t, a, b.key.PublicKey()).Endpoint; got != RelayEndpoint(b.addr) {
		t.Errorf("a reaches b at %v, want the relay endpoint", got)
	}
	if st := r.Server.Stats(); st.Forwarded == 0 {
		t.Errorf("the relay forwarded nothing: %+v", st)
	}
	// The direct path answers probes; moving to it keeps the tunnel.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := a.Probe(ctx, b.endpoint()); err != nil {
		t.Fatalf("probe of b's direct endpoint: %v", err)
	}
	cfgA.Peers[0].Endpoint, cfgB.Peers[0].Endpoint = b.endpoint(), a.endpoint()
	a.Set(cfgA)
	b.Set(cfgB)
	ping(t, a, b)
	ping(t, b, a)
	if got := peerOf(t, a, b.key.PublicKey()).Endpoint; got != b.endpoint() {
		t.Errorf("after the move a reaches b at %v, want %v", got, b.endpoint())
	}
	// Counted from after a round trip on the direct path, so that a packet
	// sent through the relay just before the move, still in flight there,
	// is not taken for one sent after it.
	before := r.Server.Stats().Forwarded
	ping(t, a, b)
	ping(t, b, a)
	if after := r.Server.Stats().Forwarded; after != before {
		t.Errorf("the relay forwarded %d packets after both moved to direct", after-before)
	}
}

func TestProbeUnanswered(t *testing.T) {
	a := newNode(t, "10.99.0.1")
	silent, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := a.Probe(ctx, netip.MustParseAddrPort(silent.LocalAddr().String())); err == nil {
		t.Fatal("a probe of a socket that never answers succeeded")
	}
}

// TestRelayReceive: what the pump reads comes out of the receive func in
// order, across the inboxes it read them into and the batches WireGuard
// takes them in, each with its sender's relay endpoint; closing the
// session ends it.
func TestRelayReceive(t *testing.T) {
	r := relaytest.Serve(t)
	vpnA, vpnB := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	a, _ := r.Dial(t, vpnA)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := relay.NewConn(pc, relay.Config{Relay: r.Addr, VPNIP: vpnB, Token: r.Tokens.Add(vpnB)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p := newRelayPath()
	p.set(b)
	if err := b.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	receive := p.receive(done)
	bufs := [][]byte{make([]byte, 2000), make([]byte, 2000), make([]byte, 2000)}
	sizes, eps := make([]int, 3), make([]conn.Endpoint, 3)
	var want, got []string
	for round := range 14 { // in rounds that the pump's queue holds even without GRO
		var batch [][]byte
		for i := range 50 {
			w := fmt.Sprintf("packet %d.%02d %s", round, i, strings.Repeat("x", 1000+round))
			want, batch = append(want, w), append(batch, []byte(w))
		}
		if err := a.WriteBatch(batch, vpnB); err != nil {
			t.Fatal(err)
		}
		for len(got) < len(want) {
			n, err := receive(bufs, sizes, eps)
			if err != nil {
				t.Fatalf("receive after %d packets: %v", len(got), err)
			}
			for i := range n {
				if ep, ok := eps[i].(*relayEndpoint); !ok || ep.peer != vpnA {
					t.Fatalf("packet %d from %v, want A's relay endpoint", len(got), eps[i])
				}
				got = append(got, string(bufs[i][:sizes[i]]))
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	close(done)
	if n, err := receive(bufs, sizes, eps); !errors.Is(err, net.ErrClosed) {
		t.Errorf("receive after the session closed = %d, %v; want net.ErrClosed", n, err)
	}
}
