package server_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// TestRelayThroughServer: enrolled nodes get relay tokens over their
// authenticated channel, exchange datagrams through the server's relay,
// and a removed node is cut off at once.
func TestRelayThroughServer(t *testing.T) {
	env := servertest.Start(t, "")
	_, ca, ra := enrol(t, env, "a")
	_, cb, rb := enrol(t, env, "b")
	dial := func(creds func(context.Context) (int, []byte, error), vpn string) (*relay.Conn, chan string) {
		port, token, err := creds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if port != env.RelayAddr().(*net.UDPAddr).Port {
			t.Fatalf("relay_port %d, want %d", port, env.RelayAddr().(*net.UDPAddr).Port)
		}
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		conn, err := relay.NewConn(pc, relay.Config{Relay: netip.MustParseAddrPort(env.RelayAddr().String()), VPNIP: netip.MustParseAddr(vpn), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		got := make(chan string, 16)
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := conn.ReadFrom(buf)
				if err != nil {
					return
				}
				got <- from.String() + ":" + string(buf[:n])
			}
		}()
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := conn.Hello(hctx); err != nil {
			t.Fatalf("HELLO as %s: %v", vpn, err)
		}
		return conn, got
	}
	a, _ := dial(func(ctx context.Context) (int, []byte, error) { r, err := ca.Relay(ctx); return r.Port, r.Token, err }, ra.VPNIP)
	b, gotB := dial(func(ctx context.Context) (int, []byte, error) { r, err := cb.Relay(ctx); return r.Port, r.Token, err }, rb.VPNIP)
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
