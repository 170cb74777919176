package server_test

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
	"golang.org/x/time/rate"
)

// TestRelayThroughServer: enrolled nodes get relay tokens over their
// authenticated channel, exchange datagrams through the server's relay,
// and a removed node is cut off at once.
func TestRelayThroughServer(t *testing.T) {
	env := servertest.Start(t, "")
	_, ca, ra := enrol(t, env, "a")
	_, cb, rb := enrol(t, env, "b")
	a, _ := dialRelay(t, env, ca, ra.VPNIP)
	b, gotB := dialRelay(t, env, cb, rb.VPNIP)
	if err := a.WriteTo([]byte("ciphertext"), netip.MustParseAddr(rb.VPNIP)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-gotB:
		if m != ra.VPNIP+":ciphertext" {
			t.Errorf("b received %q", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nothing reached b through the relay")
	}

	// The admin removes b: the relay forgets it, and a's packets go nowhere.
	store, err := server.OpenStore(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	store.RemoveNode(ctx, "b")
	store.Close()
	time.Sleep(600 * time.Millisecond) // the server notices within 250 ms
	a.WriteTo([]byte("after"), netip.MustParseAddr(rb.VPNIP))
	select {
	case m := <-gotB:
		t.Errorf("a removed node still received %q", m)
	case <-time.After(500 * time.Millisecond):
	}
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := b.Hello(hctx); err == nil {
		t.Errorf("a removed node's HELLO was accepted")
	}
}

// TestRelayOverStream: a node whose UDP is blocked opens the relay over
// its authenticated HTTPS connection, and exchanges packets through it
// with a node on UDP. The stream outlives the context that opened it;
// without a node's certificate, or without asking to upgrade, there is
// none.
func TestRelayOverStream(t *testing.T) {
	env := servertest.Start(t, "")
	na, ca, ra := enrol(t, env, "a")
	_, cb, rb := enrol(t, env, "b")
	a, gotA := dialRelay(t, env, ca, ra.VPNIP)
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rw, err := cb.RelayStream(octx)
	cancel()
	if err != nil {
		t.Fatalf("opening the relay stream: %v", err)
	}
	b, gotB := dialRelayOver(t, env, cb, rb.VPNIP, relay.NewStream(rw, netip.MustParseAddrPort(env.RelayAddr().String())))
	if err := a.WriteTo([]byte("to the stream"), netip.MustParseAddr(rb.VPNIP)); err != nil {
		t.Fatal(err)
	}
	expectRelayed(t, gotB, ra.VPNIP+":to the stream")
	if err := b.WriteTo([]byte("from the stream"), netip.MustParseAddr(ra.VPNIP)); err != nil {
		t.Fatal(err)
	}
	expectRelayed(t, gotA, rb.VPNIP+":from the stream")

	if _, err := env.Client(t, nil).RelayStream(ctx); statusCode(err) != http.StatusUnauthorized {
		t.Errorf("a relay stream without a node's certificate: %v, want 401", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: api.PinnedTLS(env.Identity().Pin, &na.Cert)}}
	resp, err := hc.Get(env.URL() + api.PathRelayStream)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != api.RelayUpgrade {
		t.Errorf("GET %s without an upgrade: %s, Upgrade %q; want 426 naming %s", api.PathRelayStream, resp.Status, resp.Header.Get("Upgrade"), api.RelayUpgrade)
	}
}

// expectRelayed waits for the relayed message want.
func expectRelayed(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case m := <-got:
		if m != want {
			t.Errorf("received %q, want %q", m, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%q never came through the relay", want)
	}
}

// A node that says it reaches the relay over TCP is shown so to its
// peers, at once (a delta, not the next full map), and not once it says
// otherwise.
func TestRelayTCPShownToPeers(t *testing.T) {
	env := servertest.Start(t, "")
	_, ca, _ := enrol(t, env, "a")
	nb, cb, _ := enrol(t, env, "b")
	first, err := ca.Peers(ctx, "0", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tcp := range []bool{true, false} {
		req := register("b", nb, nil)
		req.RelayTCP = tcp
		if _, err := cb.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
		resp, err := ca.Peers(ctx, first.Version, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Full || len(resp.Peers) != 1 || resp.Peers[0].NodeName != "b" || resp.Peers[0].RelayTCP != tcp {
			t.Errorf("after b said relay_tcp %v, a's answer is %+v, want a delta with b", tcp, resp)
		}
		first = resp
	}
}

// TestRelayRate: Config.RelayRate limits what each node sends through the
// relay (here 80 kbit/s, so 10 packets a second, in bursts of 10), and
// only when set.
func TestRelayRate(t *testing.T) {
	for _, tt := range []struct {
		name     string
		rate     rate.Limit
		min, max int
	}{
		{"default", 0, 50, 50},
		{"80 kbit/s", 80_000, 1, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := servertest.Start(t, "", func(c *server.Config) { c.RelayRate = tt.rate })
			_, ca, ra := enrol(t, env, "a")
			_, cb, rb := enrol(t, env, "b")
			a, _ := dialRelay(t, env, ca, ra.VPNIP)
			_, gotB := dialRelay(t, env, cb, rb.VPNIP)
			for range 50 {
				a.WriteTo([]byte("ciphertext"), netip.MustParseAddr(rb.VPNIP))
			}
			n := 0
			for quiet := false; !quiet; {
				select {
				case <-gotB:
					n++
				case <-time.After(500 * time.Millisecond):
					quiet = true
				}
			}
			if n < tt.min || n > tt.max {
				t.Errorf("%d of 50 packets came through, want %d to %d", n, tt.min, tt.max)
			}
		})
	}
}
