package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for Options fields left zero.
const (
	DefaultRate       = rate.Limit(20) // requests per second per source IP
	DefaultBurst      = 40
	DefaultMaxSources = 16384
)

// maxDatagram is the read buffer size. Longer datagrams are truncated, which
// only ever makes them look smaller: they then fail to parse, and get
// nothing.
const maxDatagram = 1500

// readErrorPause keeps a persistent read error from spinning Serve.
const readErrorPause = 10 * time.Millisecond

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// Rate and Burst limit the requests answered per source IP
	// (DefaultRate and DefaultBurst if zero). rate.Inf turns limiting off.
	Rate  rate.Limit
	Burst int
	// MaxSources caps how many source IPs have a limiter at once
	// (DefaultMaxSources if zero), so a flood from spoofed sources cannot
	// grow memory without bound.
	MaxSources int
	// Legacy answers datagrams that are not STUN with the JSON the seed
	// server sent, {"ip":"203.0.113.10","port":54321}, but only when that
	// is no larger than the datagram. Without it they are counted as
	// Malformed.
	Legacy bool
	// Logger receives a debug record for each dropped datagram and a
	// warning for each read error; nil discards.
	Logger *slog.Logger
}

// Stats counts what a Server did. Every datagram counts in Requests, and
// then in at most one of Replies, Malformed, Undersized or RateLimited
// (none if writing the reply failed). Legacy counts the non-STUN datagrams
// handled in Legacy mode, answered or not.
type Stats struct {
	Requests    uint64 // datagrams received
	Replies     uint64 // replies sent, STUN or JSON
	Malformed   uint64 // dropped: not a valid Binding request
	Undersized  uint64 // dropped: a legacy reply would be larger than the datagram
	RateLimited uint64 // dropped: source over its rate limit
	Legacy      uint64 // non-STUN datagrams seen in Legacy mode
}

// Server answers STUN Binding requests with the address they came from.
//
// It bounds what a spoofed request can make it send a victim: a valid
// request of any size, the bare 20-byte header included, gets the minimal
// success response (XOR-MAPPED-ADDRESS, and FINGERPRINT only if the request
// had one): 32 bytes for IPv4 and 44 for IPv6, 8 more with FINGERPRINT,
// so at most 2.2 times the request's UDP payload (1.35 times its IP
// packet), and within each source's rate limit. Anything that is not a
// valid Binding request gets nothing.
type Server struct {
	conn   net.PacketConn
	legacy bool
	log    *slog.Logger
	lim    *limiters // owned by the Serve goroutine

	requests, replies, malformed, undersized, rateLimited, legacyN atomic.Uint64
}

// NewServer returns a Server that will answer on conn once Serve runs.
func NewServer(conn net.PacketConn, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		conn:   conn,
		legacy: opts.Legacy,
		log:    log,
		lim:    newLimiters(opts),
	}
}

// Serve answers requests until ctx is done, then closes the conn and returns
// nil. If the conn is closed under it, it returns an error. Other read
// errors (an ICMP error for an earlier reply, on some systems) are logged
// and do not stop it. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	defer s.conn.Close()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		switch {
		case err == nil:
			s.handle(buf[:n], from)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("stun: serve on %v: %w", s.conn.LocalAddr(), err)
		default:
			s.log.Warn("stun: read failed", "err", err)
			time.Sleep(readErrorPause)
		}
	}
}

// Stats returns the counters so far. It is safe to call while Serve runs.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:    s.requests.Load(),
		Replies:     s.replies.Load(),
		Malformed:   s.malformed.Load(),
		Undersized:  s.undersized.Load(),
		RateLimited: s.rateLimited.Load(),
		Legacy:      s.legacyN.Load(),
	}
}

// handle answers one datagram, if it deserves an answer.
func (s *Server) handle(req []byte, from net.Addr) {
	s.requests.Add(1)
	src, ok := addrPort(from)
	if !ok {
		s.drop(&s.malformed, "unknown source address type", from)
		return
	}
	if !s.lim.allow(src.Addr(), time.Now()) {
		s.drop(&s.rateLimited, "rate limited", from)
		return
	}
	reply := s.reply(req, src)
	if reply == nil {
		return
	}
	if _, err := s.conn.WriteTo(reply, from); err != nil {
		s.log.Debug("stun: reply failed", "to", from, "err", err)
		return
	}
	s.replies.Add(1)
}

// reply returns the answer to req from src, or nil (and counts why) if it
// gets none.
func (s *Server) reply(req []byte, src netip.AddrPort) []byte {
	tx, fp, err := ParseBindingRequest(req)
	if errors.Is(err, ErrNotSTUN) && s.legacy {
		s.legacyN.Add(1)
		return s.legacyFit(req, legacyReply(src), src)
	}
	if err != nil {
		s.drop(&s.malformed, err, src)
		return nil
	}
	return Response(tx, src, fp)
}

// legacyFit returns resp if it is no longer than req, else counts it
// Undersized and returns nil: anything may look like a seed client's
// datagram, so its answer must never be larger.
func (s *Server) legacyFit(req, resp []byte, src netip.AddrPort) []byte {
	if len(resp) > len(req) {
		s.drop(&s.undersized, "legacy reply larger than the datagram", src)
		return nil
	}
	return resp
}

func (s *Server) drop(counter *atomic.Uint64, why, from any) {
	counter.Add(1)
	s.log.Debug("stun: dropped datagram", "from", from, "why", why)
}

// legacyReply is the seed server's answer: {"ip":"203.0.113.10","port":54321}.
func legacyReply(src netip.AddrPort) []byte {
	b := []byte(`{"ip":"`)
	b = append(b, src.Addr().Unmap().WithZone("").String()...)
	b = append(b, `","port":`...)
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	return append(b, '}')
}

// addrPort returns a's IP (unmapped) and port, for UDP and other addresses
// that print as host:port.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
