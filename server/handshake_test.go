package server

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

// gateFor listens on loopback behind a handshake gate with the given
// slots, and answers every handshaken connection with one byte.
func gateFor(t *testing.T, slots int) (addr string, pin api.Pin) {
	t.Helper()
	id, err := LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{id.Cert}}
	g := newHandshakeGate(ln, cfg, slots)
	t.Cleanup(func() { g.Close() })
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte{1})
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return ln.Addr().String(), id.Pin
}

// handshake connects, completes the handshake and reads the server's byte.
func handshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// stalls writes its first write (the ClientHello) and then blocks every
// other until released: a client that stops in the middle of its
// handshake.
type stalls struct {
	net.Conn
	once    sync.Once
	written bool
	release chan struct{}
}

func (s *stalls) Write(b []byte) (int, error) {
	if s.written {
		<-s.release
		return 0, net.ErrClosed
	}
	s.written = true
	return s.Conn.Write(b)
}

// A client that stalls in its handshake, before its ClientHello or after
// it, holds no turn at the CPU: another's handshake goes ahead.
func TestStalledHandshakeHoldsNoTurn(t *testing.T) {
	addr, pin := gateFor(t, 1)
	cfg := api.PinnedTLS(pin, nil)

	silent, err := net.Dial("tcp", addr) // sends nothing at all
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	st := &stalls{Conn: raw, release: make(chan struct{})}
	stalled := make(chan error, 1)
	go func() { stalled <- tls.Client(st, cfg).Handshake() }()
	defer func() { close(st.release); raw.Close(); <-stalled }()
	time.Sleep(100 * time.Millisecond) // the server has its ClientHello and waits for the rest

	for i := range 3 {
		if err := handshake(addr, cfg); err != nil {
			t.Fatalf("handshake %d beside two stalled clients: %v", i, err)
		}
	}
	select {
	case err := <-stalled:
		t.Fatalf("the stalled handshake ended (%v): the test proves nothing", err)
	default:
	}
}

// Many clients at once through a gate of two slots: every one of them
// gets its handshake.
func TestHandshakesTakeTurns(t *testing.T) {
	addr, pin := gateFor(t, 2)
	cfg := api.PinnedTLS(pin, nil)
	const clients = 200
	errs := make(chan error, clients)
	for range clients {
		go func() { errs <- handshake(addr, cfg.Clone()) }()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// Session ticket keys are the same for every server with one identity,
// differ between identities, and move on by one each period, so that a
// ticket of the previous period is still good.
func TestTicketKeys(t *testing.T) {
	a, err := LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ka, kb, next := a.ticketKeys(now), b.ticketKeys(now), a.ticketKeys(now.Add(ticketPeriod))
	if len(ka) != 2 || ka[0] == ka[1] {
		t.Fatalf("keys %x", ka)
	}
	if ka[0] == kb[0] || ka[1] == kb[1] {
		t.Error("two identities derive the same ticket key")
	}
	if next[1] != ka[0] || next[0] == ka[0] {
		t.Error("the next period's keys do not follow this one's")
	}
	if again := a.ticketKeys(now); again[0] != ka[0] {
		t.Error("ticket keys are not a function of the identity and the time")
	}
}
