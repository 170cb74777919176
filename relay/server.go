package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/stun"
	"golang.org/x/time/rate"
)

// Tokens gives the relay each node's current token. The coordination server
// implements it. Token is called from the Serve goroutine for every HELLO,
// including forged ones, so it must be quick (a lookup in memory) and safe
// to call while the tokens change. It returns false for a node that does not
// exist or was revoked.
type Tokens interface {
	Token(vpnIP netip.Addr) ([]byte, bool)
}

// Defaults for Options fields left zero: generous for one node's VPN
// traffic, and a second's worth of burst.
const (
	DefaultPacketRate     = rate.Limit(250_000)     // packets per second per node
	DefaultByteRate       = rate.Limit(250_000_000) // bytes per second per node (2 Gbit/s)
	DefaultMaxNodes       = 65_536
	DefaultBindingTimeout = 60 * time.Second
)

// PerNode is the limits for nodes that may each relay bits per second:
// their bytes, and their packets in the defaults' proportion, one per
// 1,000 bytes (a small packet costs the relay about what a large one
// does). rate.Inf lifts both.
func PerNode(bits rate.Limit) (packets, bytes rate.Limit) {
	if bits == rate.Inf {
		return rate.Inf, rate.Inf
	}
	bytes = bits / 8
	return bytes / 1000, bytes
}

// maxDatagram is the read buffer size: the largest UDP payload, so that no
// datagram is truncated on the way through.
const maxDatagram = 65_535

// maxBatch is how many messages the relay reads, and writes, with one
// system call where it can (Linux). A message is one datagram, or with
// GSO and GRO up to 64 datagrams.
const maxBatch = 64

// maxWrite is how many datagrams the relay writes at a time where it
// batches: with GSO, up to maxBatch messages of them.
const maxWrite = 8 * maxBatch

// readErrorPause keeps a persistent read error from spinning Serve.
const readErrorPause = 10 * time.Millisecond

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// PacketRate and PacketBurst limit the packets each node may send
	// through the relay; ByteRate and ByteBurst its bytes. Zero means the
	// Default; a burst defaults to one second at the rate. rate.Inf turns a
	// limit off. ByteBurst is at least 64 KiB, so any datagram can pass.
	PacketRate  rate.Limit
	PacketBurst int
	ByteRate    rate.Limit
	ByteBurst   int
	// MaxNodes caps how many nodes the relay keeps state for
	// (DefaultMaxNodes if zero). Only nodes with a valid token take a
	// place; a HELLO from a new node when the table is full is refused.
	MaxNodes int
	// BindingTimeout is how long a binding lasts without a HELLO or DATA
	// from the node (DefaultBindingTimeout if zero).
	BindingTimeout time.Duration
	// MeshKey, if set, makes the relay one of a mesh of relays that share
	// the key (see SetMesh and FORWARD).
	MeshKey []byte
	// STUN, if set, answers the STUN Binding requests sent to the relay's
	// port: with the server's STUN port, a second destination for a node
	// to compare its public mappings (wire netcheck: a NAT that maps each
	// destination apart is symmetric).
	STUN *stun.Responder
	// Logger receives a debug record for each dropped datagram and a
	// warning for each read error; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	o.PacketRate = cmp.Or(o.PacketRate, DefaultPacketRate)
	o.PacketBurst = cmp.Or(o.PacketBurst, burst(o.PacketRate))
	o.ByteRate = cmp.Or(o.ByteRate, DefaultByteRate)
	o.ByteBurst = max(cmp.Or(o.ByteBurst, burst(o.ByteRate)), maxDatagram)
	o.MaxNodes = max(cmp.Or(o.MaxNodes, DefaultMaxNodes), 1)
	o.BindingTimeout = cmp.Or(o.BindingTimeout, DefaultBindingTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// burst is a second's worth at rate r, at least 1.
func burst(r rate.Limit) int {
	if r == rate.Inf {
		return 1
	}
	return max(int(min(float64(r), 1<<30)), 1)
}

// Stats counts what a Server did. Every datagram counts in Received, and
// then in at most one of the others (none if sending failed).
type Stats struct {
	Received       uint64 // datagrams read
	HellosOK       uint64 // HELLOs accepted and answered
	HellosBad      uint64 // HELLOs refused: unknown node, bad mac, stale, replayed, table full
	HellosStale    uint64 // of those, authentic but stale: answered with HELLO-STALE
	Forwarded      uint64 // DATA datagrams forwarded
	ForwardedBytes uint64 // their bytes, relay header included
	Malformed      uint64 // dropped: not a relay message node → relay
	Unbound        uint64 // dropped: DATA from an address bound to no node
	NoRoute        uint64 // dropped: DATA to a VPN IP bound to no node here, with no relay of a mesh to send it to
	RateLimited    uint64 // dropped: the sending node is over its limits
	MeshSent       uint64 // FORWARDs sent to other relays of the mesh (counted in Forwarded once sent)
	MeshReceived   uint64 // FORWARDs from them delivered to a node bound here
	MeshBad        uint64 // dropped: FORWARDs that failed authentication
	// MeshMissed counts FORWARDs for a VPN IP bound to no node here: a
	// relay that does not know where a node is sends its DATA to every
	// relay of the mesh, and at most one of them delivers it.
	MeshMissed uint64
	STUN       uint64 // STUN Binding requests answered (see Options.STUN)
	Streams    int    // streams open now (see ServeStream)
}

// NodeStats describes one bound node.
type NodeStats struct {
	VPNIP    netip.Addr
	Addr     netip.AddrPort // where the relay sends its traffic: a UDP address, or its stream's
	Stream   bool           // it is bound to a stream (TCP), not a UDP address
	LastSeen time.Time      // last HELLO or DATA
	Packets  uint64         // DATA datagrams forwarded from it
	Bytes    uint64         // their bytes
}

// Server relays DATA between nodes that proved their VPN IPs with a HELLO.
type Server struct {
	conn    udpConn
	tokens  Tokens
	log     *slog.Logger
	table   *table
	udp     *net.UDPConn
	mesh    *mesh // nil unless Options.MeshKey
	stun    *stun.Responder
	streams streams

	received, hellosOK, hellosBad, hellosStale, forwarded, forwardedBytes atomic.Uint64
	malformed, unbound, noRoute, rateLimited                              atomic.Uint64
	meshSent, meshReceived, meshBad, meshMissed, stunAnswered             atomic.Uint64
}

// NewServer returns a Server that will relay on conn once Serve runs. The
// data path allocates nothing if conn is a *net.UDPConn.
func NewServer(conn net.PacketConn, tokens Tokens, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		tokens: tokens,
		log:    opts.Logger,
		table:  newTable(opts),
		stun:   opts.STUN,
	}
	if len(opts.MeshKey) > 0 {
		s.mesh = newMesh(opts.MeshKey)
	}
	if conn != nil {
		s.conn = asUDP(conn)
		s.udp, _ = conn.(*net.UDPConn)
	}
	return s
}

// outbox holds the datagrams handling a batch produced, to be sent with
// one system call: forwarded DATA (in the read buffers, rewritten in
// place) and HELLO-ACKs.
type outbox struct {
	w    *batchIO
	bufs [][]byte
	to   []netip.AddrPort
	src  []*node // the node a DATA (or FORWARD) is from; nil for a HELLO-ACK or a delivery from the mesh
	ack  []bool
	acks [maxWrite][helloAckLen]byte // one per datagram at most: a FORWARD may add several entries
	nack int                         // acks used
}

func newOutbox(w *batchIO) *outbox {
	return &outbox{
		w:    w,
		bufs: make([][]byte, 0, maxWrite),
		to:   make([]netip.AddrPort, 0, maxWrite),
		src:  make([]*node, 0, maxWrite),
		ack:  make([]bool, 0, maxWrite),
	}
}

func (o *outbox) add(b []byte, to netip.AddrPort, src *node, ack bool) {
	o.bufs = append(o.bufs, b)
	o.to = append(o.to, to)
	o.src = append(o.src, src)
	o.ack = append(o.ack, ack)
}

// Serve relays until ctx is done, then closes the conn and returns nil. If
// the conn is closed under it, it returns an error. Other read errors are
// logged and do not stop it. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	defer s.conn.Close()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	if s.udp != nil {
		if r, w := newBatchIO(s.udp), newBatchIO(s.udp); r != nil && w != nil {
			return s.serveBatches(ctx, r, w)
		}
	}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		switch {
		case err == nil:
			s.handle(buf[:n], from, time.Now(), nil)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("relay: serve on %v: %w", s.conn.LocalAddr(), err)
		default:
			s.log.Warn("relay: read failed", "err", err)
			time.Sleep(readErrorPause)
		}
	}
}

// serveBatches is Serve reading with r and writing with w a batch at a
// time, with GRO if the kernel has it.
func (s *Server) serveBatches(ctx context.Context, r, w *batchIO) error {
	out := newOutbox(w)
	r.enableGRO()
	bufs := make([][]byte, maxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, maxDatagram)
	}
	sizes, segs := make([]int, maxBatch), make([]int, maxBatch)
	from := make([]netip.AddrPort, maxBatch)
	var dgrams [][]byte // the messages read, split into datagrams
	var dfrom []netip.AddrPort
	for {
		n, err := r.read(bufs, sizes, segs, from)
		switch {
		case err == nil:
			dgrams, dfrom = dgrams[:0], dfrom[:0]
			for i := range n {
				had := len(dgrams)
				dgrams = appendSegments(dgrams, bufs[i][:sizes[i]], segs[i])
				for range len(dgrams) - had {
					dfrom = append(dfrom, from[i])
				}
			}
			s.handleBatch(out, dgrams, dfrom, time.Now())
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("relay: serve on %v: %w", s.conn.LocalAddr(), err)
		default:
			s.log.Warn("relay: read failed", "err", err)
			time.Sleep(readErrorPause)
		}
	}
}

// appendSegments appends to dgrams the datagrams of the message m read
// with segment size seg (see batchIO.read), each capped at its end.
func appendSegments(dgrams [][]byte, m []byte, seg int) [][]byte {
	for seg > 0 && len(m) > seg {
		dgrams = append(dgrams, m[:seg:seg])
		m = m[seg:]
	}
	return append(dgrams, m)
}

// handleBatch handles the datagrams bufs[i] from from[i], then sends what
// they call for in one batch, through out. It may overwrite bufs'
// contents. It counts them received only when done, so that whoever sees
// them counted also sees what became of them.
func (s *Server) handleBatch(out *outbox, bufs [][]byte, from []netip.AddrPort, now time.Time) {
	for len(bufs) > 0 {
		n := min(len(bufs), maxWrite) // what the outbox sends at once
		for i, b := range bufs[:n] {
			s.handle(b, from[i], now, out)
		}
		s.flush(out)
		s.received.Add(uint64(n))
		bufs, from = bufs[n:], from[n:]
	}
}

// flush sends the outbox, skipping any datagram the kernel refuses, and
// counts what it sent.
func (s *Server) flush(o *outbox) {
	for i := 0; i < len(o.bufs); {
		n, err := o.w.write(nil, o.bufs[i:], o.to[i:])
		for j := i; j < i+n; j++ {
			s.count(o.bufs[j], o.src[j], o.ack[j])
		}
		i += n
		if err != nil || n == 0 {
			if i < len(o.bufs) && s.log.Enabled(context.Background(), slog.LevelDebug) {
				s.log.Debug("relay: send failed", "to", o.to[i], "err", err)
			}
			i++ // skip the refused datagram
		}
	}
	clear(o.src) // keep no node alive
	o.bufs, o.to, o.src, o.ack, o.nack = o.bufs[:0], o.to[:0], o.src[:0], o.ack[:0], 0
}

// Stats returns the counters so far. It is safe to call while Serve runs.
func (s *Server) Stats() Stats {
	return Stats{
		Received:       s.received.Load(),
		HellosOK:       s.hellosOK.Load(),
		HellosBad:      s.hellosBad.Load(),
		HellosStale:    s.hellosStale.Load(),
		Forwarded:      s.forwarded.Load(),
		ForwardedBytes: s.forwardedBytes.Load(),
		Malformed:      s.malformed.Load(),
		Unbound:        s.unbound.Load(),
		NoRoute:        s.noRoute.Load(),
		RateLimited:    s.rateLimited.Load(),
		MeshSent:       s.meshSent.Load(),
		MeshReceived:   s.meshReceived.Load(),
		MeshBad:        s.meshBad.Load(),
		MeshMissed:     s.meshMissed.Load(),
		STUN:           s.stunAnswered.Load(),
		Streams:        s.streams.count(),
	}
}

// Nodes returns the nodes currently bound, by VPN IP.
func (s *Server) Nodes() []NodeStats {
	nodes := s.table.snapshot(time.Now())
	slices.SortFunc(nodes, func(a, b NodeStats) int { return a.VPNIP.Compare(b.VPNIP) })
	return nodes
}

// Forget drops vpnIP's binding at once, for a node the coordination server
// has just removed: Tokens only stops its next HELLO.
func (s *Server) Forget(vpnIP netip.Addr) {
	s.table.forget(vpnIP)
}

// handle deals with one datagram (or a stream's message) from the address
// from. It may overwrite b. In a batch (out set), what it sends goes to the
// outbox, and the caller counts it received. It may run on several
// goroutines at once: Serve's and each stream's.
func (s *Server) handle(b []byte, from netip.AddrPort, now time.Time, out *outbox) {
	if out == nil {
		s.received.Add(1)
	}
	typ, err := header(b)
	switch {
	case err != nil && s.stun != nil && stun.Is(b):
		s.answerSTUN(b, from, now)
	case err != nil:
		s.drop(&s.malformed, err, from)
	case typ == typeData:
		s.forward(b, from, now, out)
	case typ == typeHello:
		s.hello(b, from, now, out)
	case typ == typeForward:
		s.fromMesh(b, from, now, out)
	default:
		s.drop(&s.malformed, "unexpected message type", from)
	}
}

// answerSTUN answers the STUN Binding request b from the address from.
func (s *Server) answerSTUN(b []byte, from netip.AddrPort, now time.Time) {
	resp := s.stun.Answer(b, from, now)
	if resp == nil {
		s.drop(&s.malformed, "STUN datagram not answered (malformed, or its source is over its limit)", from)
		return
	}
	if err := s.write(resp, from); err != nil {
		s.log.Debug("relay: STUN answer failed", "to", from, "err", err)
		return
	}
	s.stunAnswered.Add(1)
}

// forward sends the DATA b on to its destination, with the destination's
// VPN IP replaced by the source's. It sends exactly the bytes it got.
func (s *Server) forward(b []byte, from netip.AddrPort, now time.Time, out *outbox) {
	dst, _, err := ParseData(b)
	if err != nil {
		s.drop(&s.malformed, err, from)
		return
	}
	src, to, blame := s.table.route(from, dst, len(b), now, s)
	if blame == &s.noRoute && s.toMesh(b, src, dst, now, out) {
		return
	}
	if blame != nil {
		s.drop(blame, "not forwarded", from)
		return
	}
	*(*[4]byte)(b[4:8]) = src.vpnIP.As4()
	s.send(out, b, to, src, false)
}

// send sends b to the address to: into the outbox out when handling a
// batch, else at once. src is the node a DATA or FORWARD is from (nil for
// anything else), and ack says b is a HELLO-ACK: either is counted once
// sent.
func (s *Server) send(out *outbox, b []byte, to netip.AddrPort, src *node, ack bool) {
	if out != nil && !isStreamAddr(to) {
		out.add(b, to, src, ack)
		return
	}
	if err := s.write(b, to); err != nil {
		s.log.Debug("relay: send failed", "to", to, "err", err)
		return
	}
	s.count(b, src, ack)
}

// write sends b to the address to at once: onto its stream, if it is a
// stream's, else from the relay's socket.
func (s *Server) write(b []byte, to netip.AddrPort) error {
	if isStreamAddr(to) {
		return s.streams.write(b, to)
	}
	_, err := s.conn.WriteToUDPAddrPort(b, to)
	return err
}

// count counts b sent: forwarded DATA (or FORWARD) from src, or a
// HELLO-ACK.
func (s *Server) count(b []byte, src *node, ack bool) {
	switch {
	case src != nil:
		src.packets.Add(1)
		src.sent.Add(uint64(len(b)))
		s.forwarded.Add(1)
		s.forwardedBytes.Add(uint64(len(b)))
	case ack:
		s.hellosOK.Add(1)
	}
}

// hello authenticates a HELLO, binds its VPN IP to from, and answers.
func (s *Server) hello(b []byte, from netip.AddrPort, now time.Time, out *outbox) {
	h, err := ParseHello(b)
	if err != nil {
		s.drop(&s.malformed, err, from)
		return
	}
	if err := s.check(h, from, now); err != nil {
		s.drop(&s.hellosBad, err, from)
		return
	}
	var ack []byte
	if out != nil {
		ack = out.acks[out.nack][:0]
		out.nack++
	}
	s.send(out, AppendHelloAck(ack, h.Nonce), from, nil, true)
}

// check verifies h and binds its VPN IP to from. An authentic HELLO from
// a node whose clock is off gets a HELLO-STALE with the relay's time, no
// larger than the HELLO, sent only because its mac proved the token.
func (s *Server) check(h Hello, from netip.AddrPort, now time.Time) error {
	if owner, ok := s.streams.owner(from); ok && owner.IsValid() && owner != h.VPNIP {
		return fmt.Errorf("relay: HELLO for %v on the stream of %v", h.VPNIP, owner)
	}
	token, ok := s.tokens.Token(h.VPNIP)
	if !ok {
		return fmt.Errorf("relay: no token for %v", h.VPNIP)
	}
	if err := h.Verify(token, now); err != nil {
		if errors.Is(err, ErrStale) {
			s.hellosStale.Add(1)
			if werr := s.write(AppendHelloStale(make([]byte, 0, staleLen), token, h.Nonce, now), from); werr != nil {
				s.log.Debug("relay: HELLO-STALE failed", "to", from, "err", werr)
			}
		}
		return err
	}
	return s.table.bind(h, from, now)
}

func (s *Server) drop(counter *atomic.Uint64, why, from any) {
	counter.Add(1)
	if s.log.Enabled(context.Background(), slog.LevelDebug) { // spare a flood the allocations
		s.log.Debug("relay: dropped datagram", "from", from, "why", why)
	}
}
