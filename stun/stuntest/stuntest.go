// Package stuntest runs a real STUN server on loopback for other packages'
// tests.
package stuntest

import (
	"context"
	"net"
	"testing"

	"golang.org/x/time/rate"

	"github.com/wire-mesh/wire/stun"
)

// Serve starts a stun.Server on 127.0.0.1 with rate limiting off, so tests
// may query it as often as they like, and returns its address. The server
// stops when the test ends.
func Serve(t testing.TB) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stuntest: listen on loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := stun.NewServer(conn, stun.Options{Rate: rate.Inf})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stuntest: server stopped with %v", err)
		}
	})
	return conn.LocalAddr().(*net.UDPAddr)
}
