// Package resolver is a node's DNS server for the mesh: NAME.DOMAIN
// resolves to the VPN address of the node of that name; any other query
// goes to the system's upstream resolvers, and its answer comes back
// unchanged.
package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// TTL is the lifetime of the mesh's answers: short, so that a rename or
// a node leaving shows within a second or two.
const TTL = 1

// MaxQuery bounds a query datagram; larger ones are dropped unread.
const MaxQuery = 4096

// Options configure a Server.
type Options struct {
	// Allow says whether a query from this address is answered; others
	// are dropped without a reply.
	Allow func(netip.Addr) bool
	// Upstreams returns the resolvers for names outside the mesh, as
	// host:port. It is called for each such query, not before.
	Upstreams func() []string
	Logger    *slog.Logger
}

// Server answers DNS queries.
type Server struct {
	opts Options
	log  *slog.Logger

	mu     sync.RWMutex
	domain string                // lowercase, with the final dot
	names  map[string]netip.Addr // lowercase name -> address
}

// New returns a server with no names.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Upstreams == nil {
		opts.Upstreams = func() []string { return nil }
	}
	if opts.Allow == nil {
		opts.Allow = func(netip.Addr) bool { return false }
	}
	return &Server{opts: opts, log: opts.Logger, names: map[string]netip.Addr{}}
}

// Set declares the mesh's domain and its names (case-insensitive).
func (s *Server) Set(domain string, names map[string]netip.Addr) {
	m := make(map[string]netip.Addr, len(names))
	for name, addr := range names {
		m[strings.ToLower(name)] = addr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.domain = dns.Fqdn(strings.ToLower(domain))
	s.names = m
}

// Update changes the names: each of gone is dropped, then each of names
// set, in time that grows with the change.
func (s *Server) Update(names map[string]netip.Addr, gone []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = make(map[string]netip.Addr, len(names))
	}
	for _, name := range gone {
		delete(s.names, strings.ToLower(name))
	}
	for name, addr := range names {
		s.names[strings.ToLower(name)] = addr
	}
}

// Serve answers queries on conn until ctx ends.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, MaxQuery+1)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ap, ok := netip.AddrFromSlice(from.(*net.UDPAddr).IP)
		if !ok || n > MaxQuery || !s.opts.Allow(ap.Unmap()) {
			continue
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			if reply := s.Handle(ctx, query); reply != nil {
				conn.WriteTo(reply, from)
			}
		}()
	}
}

// Handle answers one query as a datagram; nil means no answer (the query
// was malformed, or not one this server takes).
func (s *Server) Handle(ctx context.Context, query []byte) []byte {
	return s.handle(ctx, query, "udp")
}

// handle answers a query that came over network (udp or tcp): answers
// over UDP are truncated to what the query said it can take.
func (s *Server) handle(ctx context.Context, query []byte, network string) []byte {
	req := new(dns.Msg)
	if len(query) > MaxQuery || req.Unpack(query) != nil || req.Response || len(req.Question) != 1 {
		return nil
	}
	resp := s.Answer(ctx, req, network)
	if network == "udp" {
		resp.Truncate(udpSize(req))
	}
	b, err := resp.Pack()
	if err != nil {
		return nil
	}
	return b
}

// ServeTCP answers queries over TCP on ln until ctx ends: for clients
// whose answer did not fit in a datagram. Connections from addresses the
// server does not allow are closed at once.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, maxTCPConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if !s.opts.Allow(ap.Addr().Unmap()) {
			c.Close()
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close() // too many at once
			continue
		}
		go func() {
			defer func() { <-slots }()
			s.serveConn(ctx, c)
		}()
	}
}

const maxTCPConns = 16

// serveConn answers the length-prefixed queries of one connection, until
// it idles for tcpIdle or sends something that is not a query.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var lenBuf [2]byte
	for {
		c.SetDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n > MaxQuery {
			return
		}
		query := make([]byte, n)
		if _, err := io.ReadFull(c, query); err != nil {
			return
		}
		out := s.handle(ctx, query, "tcp")
		if out == nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
			return
		}
	}
}

const tcpIdle = 10 * time.Second

func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

// Answer answers a query with one question that came over network (udp
// or tcp): from the mesh's names if it is in the domain, else from
// upstream.
func (s *Server) Answer(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.RLock()
	domain := s.domain
	addr, known := s.names[strings.TrimSuffix(name, "."+domain)]
	s.mu.RUnlock()
	switch {
	case req.Opcode != dns.OpcodeQuery:
		return reply(req, dns.RcodeNotImplemented)
	case domain == "" || !dns.IsSubDomain(domain, name):
		return s.forward(ctx, req, network)
	case q.Qclass != dns.ClassINET:
		return reply(req, dns.RcodeRefused)
	}
	resp := reply(req, dns.RcodeSuccess)
	resp.Authoritative = true
	inDomain := name != domain && known && dns.CountLabel(name) == dns.CountLabel(domain)+1
	switch {
	case inDomain && q.Qtype == dns.TypeA && addr.Is4():
		resp.Answer = []dns.RR{&dns.A{Hdr: header(q.Name, dns.TypeA), A: addr.AsSlice()}}
	case inDomain && q.Qtype == dns.TypeAAAA && addr.Is6():
		resp.Answer = []dns.RR{&dns.AAAA{Hdr: header(q.Name, dns.TypeAAAA), AAAA: addr.AsSlice()}}
	case inDomain, name == domain:
		resp.Ns = []dns.RR{soa(domain)} // the name exists: no data of that type
	default:
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{soa(domain)}
	}
	return resp
}

func reply(req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	return resp
}

func header(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
}

// soa is the domain's SOA record, as negative answers carry it (RFC 2308);
// its minimum is the TTL of the negative answer.
func soa(domain string) dns.RR {
	return &dns.SOA{Hdr: header(domain, dns.TypeSOA), Ns: "ns." + domain, Mbox: "hostmaster." + domain,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: TTL}
}

// forward asks the upstream resolvers in turn and returns the first
// answer as it came, or SERVFAIL. A client on TCP gets the whole answer:
// a truncated one is asked again over TCP.
func (s *Server) forward(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	udp := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: dns.DefaultMsgSize}
	tcp := &dns.Client{Net: "tcp", Timeout: 4 * time.Second}
	for _, up := range s.opts.Upstreams() {
		resp, _, err := udp.ExchangeContext(ctx, req, up)
		if err == nil && resp.Truncated && network == "tcp" {
			resp, _, err = tcp.ExchangeContext(ctx, req, up)
		}
		if err == nil && resp != nil {
			resp.Id = req.Id
			return resp
		}
		s.log.Debug("upstream resolver did not answer", "upstream", up, "err", err)
	}
	return reply(req, dns.RcodeServerFailure)
}

// Upstreams reads the nameservers of a resolv.conf, leaving out skip (this
// node's own resolver): the system's resolvers as they were before wire.
func Upstreams(path string, skip netip.Addr) []string {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, ns := range cfg.Servers {
		if a, err := netip.ParseAddr(ns); err == nil && a != skip {
			out = append(out, net.JoinHostPort(ns, cfg.Port))
		}
	}
	return out
}
