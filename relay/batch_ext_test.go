package relay_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/relay/relaytest"
)

var (
	vpnA = netip.MustParseAddr("10.88.0.1")
	vpnB = netip.MustParseAddr("10.88.0.2")
)

// TestBatchRoundTrip sends with WriteBatch through a real relay and reads
// with Receive, in one batch with a HELLO-ACK and datagrams from a
// stranger, which Receive must take in or skip.
func TestBatchRoundTrip(t *testing.T) {
	r := relaytest.Serve(t)
	tokA, tokB := r.Tokens.Add(vpnA), r.Tokens.Add(vpnB)

	pcA, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := relay.NewConn(pcA, relay.Config{Relay: r.Addr, VPNIP: vpnA, Token: tokA})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // A's HELLO-ACKs, through Receive
		defer close(done)
		in := relay.NewInbox()
		for {
			if err := a.Receive(in); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { a.Close(); <-done })
	if err := a.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}

	// B says HELLO on its raw socket: the ACK waits in the socket for
	// Receive, with the rest.
	pcB, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := relay.NewConn(pcB, relay.Config{Relay: r.Addr, VPNIP: vpnB, Token: tokB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pcB.WriteToUDPAddrPort(relay.AppendHello(nil, vpnB, tokB, time.Now(), 7), r.Addr)
	waitStats(t, r, func(st relay.Stats) bool { return st.HellosOK == 2 })
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	bAddr := pcB.LocalAddr().(*net.UDPAddr).AddrPort()
	stranger.WriteToUDPAddrPort(relay.AppendData(nil, vpnA, []byte("spoof")), bAddr)

	const n = 40
	var payloads [][]byte
	for i := range n {
		payloads = append(payloads, []byte(fmt.Sprintf("packet %d %s", i, bytes.Repeat([]byte{byte(i)}, 30*i))))
	}
	if err := a.WriteBatch(payloads[:n/2], vpnB); err != nil {
		t.Fatal(err)
	}
	stranger.WriteToUDPAddrPort([]byte("garbage"), bAddr)
	if err := a.WriteBatch(payloads[n/2:], vpnB); err != nil {
		t.Fatal(err)
	}
	waitStats(t, r, func(st relay.Stats) bool { return st.Forwarded == n })

	in := relay.NewInbox()
	var got [][]byte
	for len(got) < n {
		pcB.SetReadDeadline(time.Now().Add(time.Second))
		if err := b.Receive(in); err != nil {
			t.Fatalf("Receive after %d packets: %v", len(got), err)
		}
		for {
			p, peer, ok := in.Next()
			if !ok {
				break
			}
			if peer != vpnA {
				t.Errorf("packet %d from %v, want %v", len(got), peer, vpnA)
			}
			got = append(got, bytes.Clone(p))
		}
	}
	for i := range n {
		if !bytes.Equal(got[i], payloads[i]) {
			t.Errorf("packet %d is %.20q…, want %.20q…", i, got[i], payloads[i])
		}
	}
	if len(got) != n {
		t.Errorf("%d packets, want %d", len(got), n)
	}
}

func waitStats(t *testing.T, r *relaytest.Relay, ok func(relay.Stats) bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !ok(r.Server.Stats()); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("relay stats %+v", r.Server.Stats())
		}
	}
}
