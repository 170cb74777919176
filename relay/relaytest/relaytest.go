// Package relaytest runs a real relay server on loopback for other packages'
// tests.
package relaytest

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/time/rate"

	"github.com/wire-mesh/wire/relay"
)

// Relay is a relay.Server on 127.0.0.1 with the tokens of the nodes added
// to it.
type Relay struct {
	Addr   netip.AddrPort
	Server *relay.Server
	Tokens *Tokens
}

// Serve starts a relay on 127.0.0.1 with rate limiting off and no nodes.
// It stops when the test ends.
func Serve(t testing.TB) *Relay {
	t.Helper()
	return ServeOptions(t, relay.Options{PacketRate: rate.Inf, ByteRate: rate.Inf})
}

// ServeOptions is Serve with the given options.
func ServeOptions(t testing.TB, opts relay.Options) *Relay {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relaytest: listen on loopback: %v", err)
	}
	tokens := &Tokens{}
	srv := relay.NewServer(conn, tokens, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relaytest: server stopped with %v", err)
		}
	})
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Relay{Addr: addr, Server: srv, Tokens: tokens}
}

// Dial adds a node with VPN IP vpnIP, connects it to the relay from a new
// loopback socket, reads from it in the background, and completes its
// HELLO. The Conn closes when the test ends. Received packets go to the
// returned channel, which is closed when the Conn is.
func (r *Relay) Dial(t testing.TB, vpnIP netip.Addr) (*relay.Conn, <-chan Packet) {
	t.Helper()
	token := r.Tokens.Add(vpnIP)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relaytest: listen on loopback: %v", err)
	}
	c, err := relay.NewConn(pc, relay.Config{Relay: r.Addr, VPNIP: vpnIP, Token: token})
	if err != nil {
		pc.Close()
		t.Fatalf("relaytest: %v", err)
	}
	packets := make(chan Packet, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(packets)
		Receive(c, packets)
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	if err := c.Hello(t.Context()); err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	return c, packets
}

// Packet is a packet a Conn received.
type Packet struct {
	From    netip.Addr
	Payload []byte
}

// Receive reads from c into packets until c is closed, dropping packets
// when the channel is full.
func Receive(c *relay.Conn, packets chan<- Packet) {
	buf := make([]byte, 65_535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case packets <- Packet{From: from, Payload: append([]byte(nil), buf[:n]...)}:
		default:
		}
	}
}

// Tokens is a relay.Tokens backed by a map, safe for concurrent use.
type Tokens struct {
	mu sync.Mutex
	m  map[netip.Addr][]byte
}

var _ relay.Tokens = (*Tokens)(nil)

// Add issues a fresh random token for vpnIP and returns it.
func (ts *Tokens) Add(vpnIP netip.Addr) []byte {
	token := make([]byte, relay.TokenLen)
	rand.Read(token)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[netip.Addr][]byte)
	}
	ts.m[vpnIP] = token
	return token
}

// Remove revokes vpnIP's token.
func (ts *Tokens) Remove(vpnIP netip.Addr) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.m, vpnIP)
}

// Token implements relay.Tokens.
func (ts *Tokens) Token(vpnIP netip.Addr) ([]byte, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	token, ok := ts.m[vpnIP]
	return token, ok
}
