package server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// dialFrom opens a TCP connection to addr from the loopback address src,
// as a host elsewhere would.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// closedByServer says whether the server has hung up on c: a read ends
// with an error other than our own short deadline.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestConnectionFlood: connections that show no enrolled node's key are
// bounded per address and in total, give way to new ones, and may not
// idle; enrolled nodes go on being served throughout.
func TestConnectionFlood(t *testing.T) {
	const maxConns, perIP = 40, 5
	env := servertest.Start(t, "", func(c *server.Config) {
		c.MaxConns, c.MaxConnsPerIP, c.UnauthIdle = maxConns, perIP, 300*time.Millisecond
	})
	n, c, _ := enrol(t, env, "node")
	if _, err := c.Register(ctx, register("node", n, nil)); err != nil { // its connection is now a node's
		t.Fatal(err)
	}

	// An attacker from many addresses holds idle connections: some bare
	// TCP, some with a finished TLS handshake and a stranger's key.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	stranger := servertest.NewNode(t)
	for i := range 120 {
		raw, err := dialFrom(fmt.Sprintf("127.3.%d.%d", i/50, i%50+1), env.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, raw)
		if i%2 == 0 {
			tc := tls.Client(raw, api.PinnedTLS(env.Identity().Pin, &stranger.Cert))
			tc.SetDeadline(time.Now().Add(2 * time.Second))
			tc.Handshake()
		}
	}
	if open := env.Stats().ConnsOpen; open > maxConns {
		t.Errorf("%d connections open, over the cap of %d", open, maxConns)
	}

	// The enrolled node is served, on its connection and on new ones.
	for i := range 16 {
		if _, err := c.Register(ctx, register("node", n, nil)); err != nil {
			t.Fatalf("heartbeat %d during the flood: %v", i, err)
		}
		if i%4 == 0 {
			c.CloseIdle()
		}
	}
	if _, err := c.Peers(ctx, "0", 0); err != nil {
		t.Errorf("peers during the flood: %v", err)
	}
	// So is whoever comes next: a /health, an enrolment.
	for i := range 16 {
		anon := env.Client(t, nil)
		if _, err := anon.Health(ctx); err != nil {
			t.Errorf("/health %d during the flood: %v", i, err)
		}
		anon.CloseIdle()
	}
	enrol(t, env, "newcomer")

	// One address gets perIP connections at most: each new one past that
	// closes its oldest.
	var mine []net.Conn
	for range 3 * perIP {
		raw, err := dialFrom("127.4.0.1", env.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, raw)
		defer raw.Close()
	}
	time.Sleep(100 * time.Millisecond)
	alive := 0
	for _, c := range mine {
		if !closedByServer(c) {
			alive++
		}
	}
	if alive > perIP {
		t.Errorf("%d connections from one address stay open, want at most %d", alive, perIP)
	}
	if st := env.Stats(); st.ConnsEvicted == 0 {
		t.Errorf("stats = %+v: nothing counted as evicted", st)
	}
	// Once the attacker lets go, nothing stays counted: the count follows
	// every connection to its end, handshakes that never finished too.
	for _, c := range append(held, mine...) {
		c.Close()
	}
	c.CloseIdle()
	var open int
	for range 100 {
		if open = env.Stats().ConnsOpen; open == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if open != 0 {
		t.Errorf("%d connections still counted after every client closed", open)
	}
}

// A connection that showed no node's key is closed soon once idle; a
// node's stays open for the server's idle timeout.
func TestUnauthenticatedIdleTimeout(t *testing.T) {
	env := servertest.Start(t, "", func(c *server.Config) { c.UnauthIdle = 200 * time.Millisecond })
	n, _, _ := enrol(t, env, "node")
	get := func(cert *tls.Certificate) *tls.Conn {
		tc, err := tls.Dial("tcp", env.Addr().String(), api.PinnedTLS(env.Identity().Pin, cert))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", env.URL()+api.PathHealth, nil)
		req.Write(tc)
		resp, err := http.ReadResponse(bufio.NewReader(tc), req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return tc
	}
	anon, node := get(nil), get(&n.Cert)
	defer anon.Close()
	defer node.Close()
	time.Sleep(600 * time.Millisecond)
	if !closedByServer(anon) {
		t.Error("an idle connection without a node's key is still open")
	}
	if closedByServer(node) {
		t.Error("an enrolled node's idle connection was closed")
	}
}
