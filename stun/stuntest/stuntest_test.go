package stuntest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/wire-mesh/wire/stun"
	"github.com/wire-mesh/wire/stun/stuntest"
)

func TestServe(t *testing.T) {
	srv := stuntest.Serve(t)
	if !srv.IP.IsLoopback() {
		t.Errorf("Serve = %v, want a loopback address", srv)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 100 { // more than the default rate limit's burst
		got, err := stun.Query(ctx, conn, srv)
		if want := conn.LocalAddr().(*net.UDPAddr).AddrPort(); err != nil || got != want {
			t.Fatalf("Query = %v, %v; want %v", got, err, want)
		}
	}
}
