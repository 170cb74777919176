package server_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

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
