package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
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
// its client, so a client that stalls holds none. Turns come in the order
// asked for; waiting for one does not count against the timeout, up to
// handshakeWait (api.Client gives up after 10 s).
//
// Nodes also resume their TLS sessions: the session ticket keys are
// derived from the servers' own key, so a ticket survives a restart and
// is good at every replica, and a resumed handshake skips the signatures
// and the client certificate's check.

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
	slots chan struct{}
	ready chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error // what Accept returns once done is closed
}

func newHandshakeGate(inner net.Listener, cfg *tls.Config, slots int) *handshakeGate {
	g := &handshakeGate{inner: inner, cfg: cfg, slots: make(chan struct{}, slots), ready: make(chan net.Conn), done: make(chan struct{})}
	go g.accept()
	return g
}

func (g *handshakeGate) accept() {
	for {
		c, err := g.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			g.closeWith(err)
			return
		}
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
// moment its client's data arrives until it must wait for more.
type gatedConn struct {
	net.Conn
	gate     *handshakeGate
	deadline time.Time // of the handshake
	turns    time.Time // the latest it may wait for a slot
	holding  bool
	left     bool // the handshake is over: reads pass through
}

var errNoTurn = errors.New("TLS handshake: no turn at the CPU in time")

// ready is how long a read holding a slot waits for data before it gives
// the slot up to wait: what is already in the socket is read in turn.
const ready = time.Millisecond

func (c *gatedConn) Read(b []byte) (int, error) {
	if c.left {
		return c.Conn.Read(b)
	}
	if c.holding {
		c.Conn.SetReadDeadline(time.Now().Add(ready))
		n, err := c.Conn.Read(b)
		c.Conn.SetReadDeadline(c.deadline)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		c.release()
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		return n, err
	}
	wait := time.NewTimer(time.Until(c.turns))
	defer wait.Stop()
	select {
	case c.gate.slots <- struct{}{}:
		c.holding = true
		return n, nil
	case <-wait.C:
		return 0, errNoTurn
	case <-c.gate.done:
		return 0, net.ErrClosed
	}
}

func (c *gatedConn) release() {
	if c.holding {
		<-c.gate.slots
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

// ticketPeriod is how long one session ticket key encrypts new tickets; a
// ticket is good for up to two periods.
const ticketPeriod = 24 * time.Hour

// ticketKeys are the session ticket keys at t: the current period's
// first, which new tickets are encrypted with, then the previous one's.
// Every server with this identity derives the same.
func (id Identity) ticketKeys(t time.Time) [][32]byte {
	period := t.Unix() / int64(ticketPeriod/time.Second)
	base := id.derive("wire session tickets v1")
	if base == nil {
		return nil
	}
	keys := make([][32]byte, 2)
	for i := range keys {
		h := hmac.New(sha256.New, base)
		binary.Write(h, binary.BigEndian, period-int64(i))
		copy(keys[i][:], h.Sum(nil))
	}
	return keys
}
