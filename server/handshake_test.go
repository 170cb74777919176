package server

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

// gateFor listens on loopback behind a handshake gate with the given
// slots, and answers every handshaken connection with one byte; wrap, if
// not nil, wraps the listener under the gate.
func gateFor(t *testing.T, slots int, wrap func(net.Listener) net.Listener) (addr string, pin api.Pin, g *handshakeGate) {
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
	inner := ln
	if wrap != nil {
		inner = wrap(ln)
	}
	g = newHandshakeGate(inner, cfg, slots)
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
	return ln.Addr().String(), id.Pin, g
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
	addr, pin, _ := gateFor(t, 1, nil)
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
	addr, pin, _ := gateFor(t, 2, nil)
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

// Session ticket keys are a function of the secret and the time, differ
// between secrets, and move on by one each period, so that a ticket of
// the previous period is still good.
func TestTicketKeys(t *testing.T) {
	a, b := []byte("secret a, thirty-two bytes long."), []byte("secret b, thirty-two bytes long.")
	now := time.Now()
	ka, kb, next := ticketKeys(a, now), ticketKeys(b, now), ticketKeys(a, now.Add(ticketPeriod))
	if len(ka) != 2 || ka[0] == ka[1] {
		t.Fatalf("keys %x", ka)
	}
	if ka[0] == kb[0] || ka[1] == kb[1] {
		t.Error("two secrets derive the same ticket key")
	}
	if next[1] != ka[0] || next[0] == ka[0] {
		t.Error("the next period's keys do not follow this one's")
	}
	if again := ticketKeys(a, now); again[0] != ka[0] {
		t.Error("ticket keys are not a function of the secret and the time")
	}
}

// dripConn is a client that always has a little data ready: a TLS record
// header announcing 16 KiB, then one byte per read, a read every 400 µs,
// so its record takes 6.5 s to arrive. It would keep a slot all that time
// if a slot were held for as long as data comes.
type dripConn struct {
	net.Conn // nil: only what is below is used
	sent     int
	closed   chan struct{}
	once     sync.Once
}

func (d *dripConn) Read(b []byte) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	case <-time.After(400 * time.Microsecond):
	}
	header := []byte{0x16, 0x03, 0x01, 0x40, 0x00}
	if d.sent < len(header) {
		n := copy(b, header[d.sent:])
		d.sent += n
		return n, nil
	}
	b[0] = 0
	return 1, nil
}

func (d *dripConn) Write(b []byte) (int, error)      { return len(b), nil }
func (d *dripConn) Close() error                     { d.once.Do(func() { close(d.closed) }); return nil }
func (d *dripConn) SetDeadline(time.Time) error      { return nil }
func (d *dripConn) SetReadDeadline(time.Time) error  { return nil }
func (d *dripConn) SetWriteDeadline(time.Time) error { return nil }
func (d *dripConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)} }
func (d *dripConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// A client that drips its bytes holds a slot no longer than a turn.
func TestDrippingHandshakeHoldsNoTurn(t *testing.T) {
	addr, pin, g := gateFor(t, 1, nil)
	drip := &dripConn{closed: make(chan struct{})}
	defer drip.Close()
	go g.handshake(drip)
	time.Sleep(50 * time.Millisecond) // it has the slot
	for i := range 3 {
		if err := handshake(addr, api.PinnedTLS(pin, nil)); err != nil {
			t.Fatalf("handshake %d beside a dripping client: %v", i, err)
		}
	}
}

// A handshake that has had a turn goes before those that have not begun.
func TestTurnsServeReturningFirst(t *testing.T) {
	tn := newTurns(1)
	far := time.Now().Add(time.Minute)
	if err := tn.take(false, far, nil); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	queued := func(n int) bool {
		tn.mu.Lock()
		defer tn.mu.Unlock()
		return len(tn.again)+len(tn.first) == n
	}
	wait := func(n int) {
		for !queued(n) {
			time.Sleep(time.Millisecond)
		}
	}
	go func() { tn.take(false, far, nil); order <- "new"; tn.give() }()
	wait(1)
	go func() { tn.take(true, far, nil); order <- "returning"; tn.give() }()
	wait(2)
	tn.give()
	if first := <-order; first != "returning" {
		t.Errorf("%s got the slot first", first)
	}
	<-order
}

// A waiter whose time is up gets no slot; one given a slot as its time
// ran out keeps it.
func TestTurnsTimeOut(t *testing.T) {
	tn := newTurns(1)
	if err := tn.take(false, time.Now().Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if err := tn.take(false, time.Now().Add(10*time.Millisecond), nil); err != errNoTurn {
		t.Fatalf("take with the slot held: %v, want errNoTurn", err)
	}
	tn.give()
	if err := tn.take(false, time.Now(), nil); err != nil {
		t.Errorf("take of a free slot with no time left: %v", err)
	}
}

// flaky fails its first Accept as running out of file descriptors does.
type flaky struct {
	net.Listener
	failed bool
}

func (f *flaky) Accept() (net.Conn, error) {
	if !f.failed {
		f.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

// An accept error other than the listener closing is passed over: the
// gate accepts again after a pause.
func TestGateSurvivesAcceptError(t *testing.T) {
	addr, pin, _ := gateFor(t, 2, func(ln net.Listener) net.Listener { return &flaky{Listener: ln} })
	if err := handshake(addr, api.PinnedTLS(pin, nil)); err != nil {
		t.Errorf("a handshake after an accept error: %v", err)
	}
}
