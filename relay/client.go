package relay

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
)

// Client timing. HELLOs are retransmitted after initialRTO, then after twice
// the wait before, up to maxRTO; a HELLO round gives up after helloTimeout
// unless its context ends first.
const (
	DefaultKeepalive = 20 * time.Second
	initialRTO       = 500 * time.Millisecond
	maxRTO           = 4 * time.Second
	helloTimeout     = 15 * time.Second
)

// Config describes a node to its relay.
type Config struct {
	Relay netip.AddrPort // the relay server
	VPNIP netip.Addr     // the node's VPN IPv4 address
	Token []byte         // the node's token, from the coordination server
	// Keepalive is the interval between HELLOs in Run (DefaultKeepalive if
	// zero). It must stay well under the relay's binding timeout.
	Keepalive time.Duration
	// Logger receives a warning when a keepalive HELLO goes unanswered,
	// or when the relay says this machine's clock is off; nil discards.
	Logger *slog.Logger
	// Clock is this machine's clock (time.Now if nil), for tests.
	Clock func() time.Time
}

// Conn is a node's connection to its relay: it sends WireGuard packets to
// other nodes by VPN IP through the relay, and receives theirs.
//
// One goroutine must call Receive or ReadFrom in a loop: it also takes in
// the HELLO-ACKs that Hello waits for. WriteTo and
// Hello may be called from any goroutine.
type Conn struct {
	pc    udpConn
	cfg   Config
	log   *slog.Logger
	bufs  sync.Pool // *[]byte for WriteTo
	hello sync.Mutex

	udp     *net.UDPConn // pc, if batches can be used on it
	writers sync.Pool    // *batchWriter for WriteBatch
	rmu     sync.Mutex   // Receive's, for reader
	reader  *batchIO
	in      *Inbox // ReadFrom's, once it is called

	mu      sync.Mutex
	pending []uint64      // nonces of the HELLOs of the Hello in progress
	acked   chan struct{} // closed when one of them is acknowledged
	// skew is how far the relay's clock is ahead of this machine's, as a
	// HELLO-STALE said: HELLOs are stamped with the relay's time.
	skew time.Duration
}

// NewConn returns a Conn that talks to cfg.Relay over pc, and owns pc. The
// data path allocates nothing if pc is a *net.UDPConn.
func NewConn(pc net.PacketConn, cfg Config) (*Conn, error) {
	if !cfg.VPNIP.Unmap().Is4() {
		return nil, fmt.Errorf("relay: VPN IP %v is not an IPv4 address", cfg.VPNIP)
	}
	if !cfg.Relay.IsValid() {
		return nil, errors.New("relay: no relay address")
	}
	cfg.Relay = unmap(cfg.Relay)
	cfg.VPNIP = cfg.VPNIP.Unmap()
	cfg.Keepalive = cmp.Or(cfg.Keepalive, DefaultKeepalive)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{pc: asUDP(pc), cfg: cfg, log: log}
	c.bufs.New = func() any {
		b := make([]byte, 0, maxDatagram)
		return &b
	}
	if u, ok := pc.(*net.UDPConn); ok {
		if c.reader = newBatchIO(u); c.reader != nil {
			c.udp = u
			c.reader.enableGRO()
		}
	}
	return c, nil
}

// Close closes the socket; ReadFrom then returns net.ErrClosed.
func (c *Conn) Close() error { return c.pc.Close() }

// LocalAddr returns the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// Hello proves the node's VPN IP to the relay, which binds it to this
// socket's address, and waits for the relay to acknowledge. It retransmits,
// each time with a fresh nonce, until the answer comes, ctx is done, or 15 s
// pass. Receive or ReadFrom must be running meanwhile.
func (c *Conn) Hello(ctx context.Context) error {
	c.hello.Lock()
	defer c.hello.Unlock()
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	acked := c.await()
	defer c.forget()
	for sent, rto := 1, initialRTO; ; sent, rto = sent+1, min(2*rto, maxRTO) {
		if err := c.sendHello(); err != nil {
			return err
		}
		t := time.NewTimer(rto)
		select {
		case <-acked:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("relay: %v did not answer HELLO from %v (%d sent): %w", c.cfg.Relay, c.cfg.VPNIP, sent, ctx.Err())
		case <-t.C:
		}
	}
}

// Probe is Hello for a Conn that nothing reads yet: it reads the answers
// itself, then leaves the socket to the reader that follows (the engine's,
// once the Conn is handed to it). DATA that arrives meanwhile is dropped. It needs a socket with read deadlines, as UDP
// sockets have: it is how a node on a stream finds out whether UDP works
// again, without the engine's relay changing until it does.
func (c *Conn) Probe(ctx context.Context) error {
	d, ok := c.pc.(interface{ SetReadDeadline(time.Time) error })
	if !ok || d.SetReadDeadline(time.Time{}) != nil {
		return fmt.Errorf("relay: probing needs read deadlines, which %T has not: %w", c.pc, errors.ErrUnsupported)
	}
	defer d.SetReadDeadline(time.Time{})
	hello := make(chan error, 1)
	go func() { hello <- c.Hello(ctx) }()
	buf := make([]byte, maxDatagram)
	for {
		d.SetReadDeadline(time.Now().Add(probeRead))
		_, _, err := c.ReadFrom(buf) // passes the answers to Hello
		select {
		case err := <-hello:
			return err
		default:
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("relay: probe %v: %w", c.cfg.Relay, err) // Hello fails at its next send, or times out
		}
	}
}

// probeRead is how long Probe's reads wait before it looks whether Hello
// is done.
const probeRead = 100 * time.Millisecond

// await starts a new round of HELLOs, forgetting the nonces of the last,
// and returns the channel closed when one of the new round's is answered.
func (c *Conn) await() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = c.pending[:0]
	c.acked = make(chan struct{})
	return c.acked
}

// forget ends the round of HELLOs: later answers to it are ignored.
func (c *Conn) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = c.pending[:0]
	c.acked = nil
}

func (c *Conn) sendHello() error {
	var b [8]byte
	rand.Read(b[:])
	nonce := binary.BigEndian.Uint64(b[:])
	c.mu.Lock()
	c.pending = append(c.pending, nonce)
	now := c.cfg.Clock().Add(c.skew)
	c.mu.Unlock()
	msg := AppendHello(make([]byte, 0, helloLen), c.cfg.VPNIP, c.cfg.Token, now, nonce)
	if _, err := c.pc.WriteToUDPAddrPort(msg, c.cfg.Relay); err != nil {
		return fmt.Errorf("relay: send HELLO to %v: %w", c.cfg.Relay, err)
	}
	return nil
}

// control takes in a message from the relay that is not DATA: a HELLO-ACK
// for Hello, or a HELLO-STALE that says how far off this machine's clock
// is.
func (c *Conn) control(b []byte) {
	if nonce, err := ParseHelloAck(b); err == nil {
		c.acknowledged(nonce)
		return
	}
	if nonce, relayTime, err := ParseHelloStale(b, c.cfg.Token); err == nil {
		c.stale(nonce, relayTime)
	}
}

// stale takes in a HELLO-STALE: HELLOs from now on carry the relay's time,
// so that the next one (Hello retransmits soon) is accepted.
func (c *Conn) stale(nonce uint64, relayTime time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.pending, nonce) {
		return // not an answer to this round's HELLOs
	}
	skew := relayTime.Sub(c.cfg.Clock())
	if (skew - c.skew).Abs() < time.Second {
		return
	}
	c.skew = skew
	c.log.Warn("relay: this machine's clock is off from the relay's (the coordination server's); "+
		"HELLOs now carry the relay's time, but set the clock right (NTP: timedatectl set-ntp true)",
		"clock", c.cfg.Clock().UTC().Format(time.RFC3339), "relay", relayTime.UTC().Format(time.RFC3339), "off_by", (-skew).Round(time.Second))
}

// Skew is how far the relay's clock is ahead of this machine's, as the
// relay last said (zero unless it had to).
func (c *Conn) Skew() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skew
}

// acknowledged takes in a HELLO-ACK.
func (c *Conn) acknowledged(nonce uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acked != nil && slices.Contains(c.pending, nonce) {
		close(c.acked)
		c.acked = nil
	}
}

// Run keeps the node bound at the relay: it sends a HELLO now and then every
// Keepalive, logging the ones that go unanswered, until ctx is done. It
// returns nil then. Receive or ReadFrom must be running meanwhile.
func (c *Conn) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Keepalive)
	defer t.Stop()
	for {
		if err := c.Hello(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("relay: keepalive failed; traffic through the relay stops until it answers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// WriteTo sends payload, a WireGuard packet, through the relay to the node
// with VPN IP peer. The relay drops it if peer is not bound there.
func (c *Conn) WriteTo(payload []byte, peer netip.Addr) error {
	if !peer.Unmap().Is4() {
		return fmt.Errorf("relay: peer %v is not an IPv4 address", peer)
	}
	p := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(p)
	*p = AppendData((*p)[:0], peer, payload)
	if _, err := c.pc.WriteToUDPAddrPort(*p, c.cfg.Relay); err != nil {
		return fmt.Errorf("relay: send to %v via %v: %w", peer, c.cfg.Relay, err)
	}
	return nil
}

// batchWriter is WriteBatch's scratch.
type batchWriter struct {
	io  *batchIO
	hdr [DataOverhead]byte
}

// WriteBatch sends each of payloads, WireGuard packets, through the relay
// to the node with VPN IP peer, as WriteTo would, but with as few system
// calls as it can (one per 64 packets on Linux). It stops at the first
// packet the system refuses, and returns why.
func (c *Conn) WriteBatch(payloads [][]byte, peer netip.Addr) error {
	if !peer.Unmap().Is4() {
		return fmt.Errorf("relay: peer %v is not an IPv4 address", peer)
	}
	if c.udp == nil {
		for _, p := range payloads {
			if err := c.WriteTo(p, peer); err != nil {
				return err
			}
		}
		return nil
	}
	w, _ := c.writers.Get().(*batchWriter)
	if w == nil {
		if w = (&batchWriter{io: newBatchIO(c.udp)}); w.io == nil {
			return fmt.Errorf("relay: send to %v via %v: socket unusable", peer, c.cfg.Relay)
		}
	}
	defer c.writers.Put(w)
	hdr := appendAddr(appendHeader(w.hdr[:0], typeData), peer)
	to := [1]netip.AddrPort{c.cfg.Relay}
	for len(payloads) > 0 {
		n, err := w.io.write(hdr, payloads, to[:])
		if err != nil {
			return fmt.Errorf("relay: send to %v via %v: %w", peer, c.cfg.Relay, err)
		}
		payloads = payloads[n:]
	}
	return nil
}
