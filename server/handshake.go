package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// TLS handshakes are the server's costliest work per connection, and
// after a restart or an outage every node connects at once. Run them all
// at once and each gets a sliver of the CPU: at 10,000 nodes on one core
// they all outlast their timeout and fail, and the nodes come back to do
// it again. So handshakes take turns at the CPU: a handshake holds one of
// a few slots while it computes, and gives it up whenever it waits for
// its client, so a client that stalls holds none, and after maxTurn, so a
// client that drips its bytes holds one no longer than anyone. Turns come
// in the order asked for, a handshake already under way before one that
// has not begun (it has had its costly first turn, and would otherwise
// time out waiting for its last); waiting for one does not count against
// the timeout, up to handshakeWait (api.Client gives up after 10 s).
//
// Nodes also resume their TLS sessions: the session ticket keys are
// derived from a secret kept in the store, so a ticket survives a restart
// and is good at every replica, and a resumed handshake skips the
// signatures and the client certificate's check.

const (
	// handshakeTimeout bounds the handshake's time at the CPU and waiting
	// for its client; handshakeWait its time waiting for turns.
	handshakeTimeout = 5 * time.Second
	handshakeWait    = 10 * time.Second
)

// handshakeSlots is how many handshakes compute at once.
func handshakeSlots() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// handshakeGate is a TLS listener whose Accept returns connections whose
// handshake is done (or failed: the http.Server then logs it and closes
// the connection, as it would have itself).
type handshakeGate struct {
	inner net.Listener
	cfg   *tls.Config
	slots *turns
	ready chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error // what Accept returns once done is closed
}

func newHandshakeGate(inner net.Listener, cfg *tls.Config, slots int) *handshakeGate {
	g := &handshakeGate{inner: inner, cfg: cfg, slots: newTurns(slots), ready: make(chan net.Conn), done: make(chan struct{})}
	go g.accept()
	return g
}

// accept accepts until the listener closes. Other errors (out of file
// descriptors, a connection reset before it was accepted) pass: it tries
// again after a pause, as net/http's Serve does.
func (g *handshakeGate) accept() {
	var pause time.Duration
	for {
		c, err := g.inner.Accept()
		switch {
		case errors.Is(err, net.ErrClosed):
			g.closeWith(err)
			return
		case err != nil:
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-g.done:
				return
			}
			continue
		}
		pause = 0
		go g.handshake(c)
	}
}

// handshake completes c's TLS handshake in turns and hands it over.
func (g *handshakeGate) handshake(c net.Conn) {
	now := time.Now()
	gc := &gatedConn{Conn: c, gate: g, deadline: now.Add(handshakeTimeout + handshakeWait), turns: now.Add(handshakeWait)}
	gc.SetDeadline(gc.deadline)
	tc := tls.Server(gc, g.cfg)
	tc.Handshake() // an error is the http.Server's to log
	gc.leave()
	gc.SetDeadline(time.Time{})
	select {
	case g.ready <- tc:
	case <-g.done:
		tc.Close()
	}
}

func (g *handshakeGate) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.done:
		return nil, g.err
	}
}

func (g *handshakeGate) Close() error { return g.closeWith(net.ErrClosed) }

// closeWith closes the gate: Accept returns err from now on.
func (g *handshakeGate) closeWith(err error) error {
	var cerr error
	g.once.Do(func() {
		g.err = err
		close(g.done)
		cerr = g.inner.Close()
	})
	return cerr
}

func (g *handshakeGate) Addr() net.Addr { return g.inner.Addr() }

// gatedConn is a connection in its handshake: it holds a slot from the
// moment its client's data arrives until it must wait for more, or its
// turn is over.
type gatedConn struct {
	net.Conn
	gate     *handshakeGate
	deadline time.Time // of the handshake
	turns    time.Time // the latest it may wait for a slot
	holding  bool
	since    time.Time // when the slot held was taken
	began    bool      // it has had a turn
	left     bool      // the handshake is over: reads pass through
}

var errNoTurn = errors.New("TLS handshake: no turn at the CPU in time")

const (
	// ready is how long a read holding a slot waits for data before it
	// gives the slot up to wait: what is already in the socket is read in
	// turn.
	ready = time.Millisecond
	// maxTurn is how long a handshake holds a slot before the next read
	// sends it to the back of the queue. Computing a turn takes about a
	// millisecond.
	maxTurn = 20 * time.Millisecond
)

func (c *gatedConn) Read(b []byte) (int, error) {
	if c.left {
		return c.Conn.Read(b)
	}
	if c.holding && time.Since(c.since) < maxTurn {
		c.Conn.SetReadDeadline(time.Now().Add(ready))
		n, err := c.Conn.Read(b)
		c.Conn.SetReadDeadline(c.deadline)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
	}
	c.release()
	n, err := c.Conn.Read(b)
	if err != nil {
		return n, err
	}
	if err := c.gate.slots.take(c.began, c.turns, c.gate.done); err != nil {
		return 0, err
	}
	c.holding, c.since, c.began = true, time.Now(), true
	return n, nil
}

func (c *gatedConn) release() {
	if c.holding {
		c.gate.slots.give()
		c.holding = false
	}
}

// leave ends the gating once the handshake is over, before the conn is
// handed on.
func (c *gatedConn) leave() {
	c.release()
	c.left = true
}

// NetConn is the connection accepted, for the connection limits.
func (c *gatedConn) NetConn() net.Conn { return c.Conn }

// turns is a semaphore of slots whose waiters are served first come,
// first served: those that had a turn before ahead of those that had not.
type turns struct {
	mu           sync.Mutex
	free         int
	again, first []chan struct{} // waiting; a channel is closed to grant it a slot
}

func newTurns(slots int) *turns { return &turns{free: slots} }

// take waits for a slot until the deadline or done; again says the
// waiter had a turn before.
func (t *turns) take(again bool, deadline time.Time, done <-chan struct{}) error {
	t.mu.Lock()
	if t.free > 0 && len(t.again)+len(t.first) == 0 {
		t.free--
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if again {
		t.again = append(t.again, ch)
	} else {
		t.first = append(t.first, ch)
	}
	t.mu.Unlock()
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	var err error
	select {
	case <-ch:
		return nil
	case <-wait.C:
		err = errNoTurn
	case <-done:
		err = net.ErrClosed
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drop(ch) {
		return err
	}
	return nil // granted as it gave up: the slot is the caller's
}

// drop takes ch off the queues, if it is still waiting. Callers hold t.mu.
func (t *turns) drop(ch chan struct{}) bool {
	for _, q := range []*[]chan struct{}{&t.again, &t.first} {
		for i, c := range *q {
			if c == ch {
				*q = append((*q)[:i], (*q)[i+1:]...)
				return true
			}
		}
	}
	return false
}

// give returns a slot: to the first waiter, or to the free ones.
func (t *turns) give() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, q := range []*[]chan struct{}{&t.again, &t.first} {
		if len(*q) > 0 {
			close((*q)[0])
			*q = (*q)[1:]
			return
		}
	}
	t.free++
}

// ticketPeriod is how long one session ticket key encrypts new tickets; a
// ticket is good for up to two periods.
const ticketPeriod = 24 * time.Hour

// ticketKeys are the session ticket keys at t, from the mesh's ticket
// secret: the current period's first, which new tickets are encrypted
// with, then the previous one's. Every server of the mesh derives the
// same.
func ticketKeys(secret []byte, t time.Time) [][32]byte {
	period := t.Unix() / int64(ticketPeriod/time.Second)
	keys := make([][32]byte, 2)
	for i := range keys {
		h := hmac.New(sha256.New, secret)
		binary.Write(h, binary.BigEndian, period-int64(i))
		copy(keys[i][:], h.Sum(nil))
	}
	return keys
}

// ticketSecret is the mesh's secret for session tickets, made by the first
// server to run on the store and found there by the others. It is not
// derived from the TLS key: a ticket carries the client certificate that
// the server then takes as the node's, so who can make tickets can pose
// as any node, and a copy of server.key alone must not be enough.
func (s *Server) ticketSecret(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, 32)
	rand.Read(fresh)
	stored, err := s.store.InitMeta(ctx, "ticket_secret", hex.EncodeToString(fresh))
	if err != nil {
		return nil, fmt.Errorf("the session ticket secret: %w", err)
	}
	secret, err := hex.DecodeString(stored)
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("the store's session ticket secret is not 32 bytes of hex")
	}
	return secret, nil
}
