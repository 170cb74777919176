// Package server is wire's coordination server: it enrols nodes, tells
// each where its peers are, and answers STUN. It never carries VPN traffic.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/connlimit"
	"github.com/wire-mesh/wire/internal/scrape"
	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/stun"
	"golang.org/x/time/rate"
)

// Defaults of the coordination server.
const (
	DefaultPort   = 8787
	DefaultSubnet = "10.99"
)

// Config is what `wire server` is told.
type Config struct {
	StateDir string
	// Store is where the mesh is kept: "" for the SQLite store in StateDir,
	// or a postgres:// URL, which several servers (replicas) may share.
	Store string
	// Listen is the HTTP API's TCP address; STUN listens on UDP at the
	// same host, port+1, unless STUNListen says otherwise.
	Listen      string
	STUNListen  string
	RelayListen string // UDP; default: the HTTP port + 2
	// MetricsListen, if set, is the TCP address of a listener that serves
	// Prometheus metrics at /metrics, without authentication: the admin
	// binds it where only the scraper reaches (wire server takes a bare
	// port as loopback's).
	MetricsListen string
	// RelayRate is how many bits per second each node may send through
	// the relay (relay.PerNode): zero for relay.DefaultByteRate's,
	// rate.Inf for no limit.
	RelayRate rate.Limit
	// RelayPeers are the relays (HOST:PORT, UDP) of the mesh's other
	// servers, which DATA for nodes bound to one of them is forwarded to.
	RelayPeers []string
	// Open is the seed-compatible mode: plain HTTP, no join keys, no
	// authentication at all.
	Open   bool
	Subnet netip.Prefix
	// DNSDomain is the mesh's DNS domain (default api.DefaultDNSDomain).
	DNSDomain      string
	TrustedProxies []netip.Prefix
	// SeedStateFile is a meshpop-wire state.json to import once.
	SeedStateFile string
	// MaxConns caps the HTTP connections (default: what the open-file
	// limit allows), MaxConnsPerIP those from one address that have not
	// shown an enrolled node's key (DefaultMaxConnsPerIP), and UnauthIdle
	// is how long such a connection may idle (DefaultUnauthIdle).
	MaxConns      int
	MaxConnsPerIP int
	UnauthIdle    time.Duration
	Version       string
	Logger        *slog.Logger
	Now           func() time.Time // for tests; time.Now if nil
}

// Server is a running coordination server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	id      Identity
	store   *Store
	reg     *registry
	punches *punches
	conns   *connlimit.Tracker

	stats       stats
	metrics     *metrics
	metricsLn   net.Listener // nil without Config.MetricsListen
	fullAnswers fullSlots    // full /peers answers being written (see full.go)
	syncs       syncState    // of the registry with the store; maintain's own
	warnings    *warnings
	stopping    chan struct{} // closed when Run begins to stop

	http      *http.Server
	ln        net.Listener
	tls       *tls.Config // the API listener's; nil in --open mode
	tickets   []byte      // the mesh's session ticket secret (see ticketSecret)
	relayAddr net.Addr
	udp       net.PacketConn
	stun      *stun.Server
	relay     *relay.Server
	wg        sync.WaitGroup

	resolve    func(string) (netip.AddrPort, error) // resolveUDP; a variable for tests
	relayMu    sync.Mutex
	relayNames []string         // cfg.RelayPeers
	relayPeers []netip.AddrPort // their addresses, as last resolved
}

// New opens the state dir and binds the listeners; Run serves them.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DNSDomain == "" {
		cfg.DNSDomain = api.DefaultDNSDomain
	}
	s := &Server{cfg: cfg, log: cfg.Logger, punches: newPunches(cfg.Now), warnings: newWarnings(cfg.Logger), stopping: make(chan struct{}),
		fullAnswers: make(fullSlots, maxFullAnswers), resolve: resolveUDP, metrics: newMetrics()}
	if err := s.open(); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.store.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	id, err := LoadIdentity(s.cfg.StateDir)
	if err != nil {
		return err
	}
	s.id = id
	if s.store, err = OpenStoreAt(context.Background(), s.cfg.StateDir, s.cfg.Store); err != nil {
		return err
	}
	s.store.wrote = func(d time.Duration) { s.metrics.storeWrites.Observe(d.Seconds()) }
	if err := s.load(context.Background()); err != nil {
		s.store.Close()
		return err
	}
	return nil
}

// load checks the subnet against the store's, imports a seed state file
// if one is given, and fills the registry.
func (s *Server) load(ctx context.Context) error {
	stored, err := s.store.Meta(ctx, "subnet")
	if err != nil {
		return err
	}
	switch {
	case stored == "":
		err = s.store.SetMeta(ctx, "subnet", s.cfg.Subnet.String())
	case stored != s.cfg.Subnet.String():
		err = fmt.Errorf("the state in %s uses VPN subnet %s, but WIRE_VPN_SUBNET asks for %s: nodes keep their addresses, so the subnet cannot change", s.cfg.StateDir, stored, s.cfg.Subnet)
	}
	if err != nil {
		return err
	}
	if err := s.checkPin(ctx); err != nil {
		return err
	}
	if !s.cfg.Open {
		if s.tickets, err = s.ticketSecret(ctx); err != nil {
			return err
		}
	}
	s.reg = newRegistry(s.store, s.cfg.Subnet, s.cfg.Now, s.id.MapKey())
	if s.cfg.SeedStateFile != "" {
		if err := s.importSeed(ctx, s.cfg.SeedStateFile); err != nil {
			return err
		}
	}
	// The revision first: what changes after it is read again by sync.
	rev, err := s.store.Revision(ctx)
	if err != nil {
		return fmt.Errorf("reading the store's revision: %w", err)
	}
	recs, err := s.store.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("reading nodes: %w", err)
	}
	if err := s.reg.load(recs); err != nil {
		return err
	}
	s.syncs = syncState{rev: rev, ok: s.cfg.Now()}
	return s.loadPolicy(ctx)
}

// ServerPin is the pin of the TLS key that the servers of a shared store
// present, as the first of them recorded it.
func (s *Store) ServerPin(ctx context.Context) (api.Pin, error) {
	stored, err := s.Meta(ctx, "server_pin")
	if err != nil {
		return api.Pin{}, err
	}
	if stored == "" {
		return api.Pin{}, fmt.Errorf("no server has run on the store %s yet: start the first `wire server --store` (it records its TLS key's pin), then create keys", s.Path())
	}
	return api.ParsePin(stored)
}

// checkPin makes sure that every server of a store presents the same TLS
// key: join keys name its pin, and nodes pin it. The first server to run
// records its pin; a replica with another key is refused.
func (s *Server) checkPin(ctx context.Context) error {
	if s.cfg.Open || !s.store.Shared() {
		return nil
	}
	stored, err := s.store.Meta(ctx, "server_pin")
	switch {
	case err != nil:
		return err
	case stored == "":
		// Replicas with different keys may start at once: the first write
		// stays, and the others find it.
		if stored, err = s.store.InitMeta(ctx, "server_pin", s.id.Pin.String()); err != nil {
			return err
		}
	}
	if stored != s.id.Pin.String() {
		return fmt.Errorf("this server's TLS key (%s in %s, pin %s) is not the one the mesh in %s knows (pin %s): "+
			"every server of a mesh presents the same key. Copy %s and %s from the first server's state dir into %s",
			KeyFile, s.cfg.StateDir, s.id.Pin, s.store.Path(), stored, KeyFile, TokenFile, s.cfg.StateDir)
	}
	return nil
}

func (s *Server) listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("HTTP listen: %w (is another wire server running? see --listen)", err)
	}
	stunAddr := s.cfg.STUNListen
	if stunAddr == "" {
		stunAddr = nextPort(ln.Addr().String())
	}
	udp, err := net.ListenPacket("udp", stunAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("STUN listen on UDP %s: %w (see --stun-listen)", stunAddr, err)
	}
	relayAddr := s.cfg.RelayListen
	if relayAddr == "" {
		relayAddr = nextPort(nextPort(ln.Addr().String()))
	}
	rconn, err := net.ListenPacket("udp", relayAddr)
	if err != nil {
		ln.Close()
		udp.Close()
		return fmt.Errorf("relay listen on UDP %s: %w (see --relay-listen)", relayAddr, err)
	}
	ropts := relay.Options{Logger: s.log, MeshKey: s.id.MeshKey(), STUN: stun.NewResponder(stun.Options{})}
	if s.cfg.RelayRate != 0 {
		ropts.PacketRate, ropts.ByteRate = relay.PerNode(s.cfg.RelayRate)
	}
	s.relay = relay.NewServer(rconn, s.reg, ropts)
	s.relayAddr = rconn.LocalAddr()
	if err := s.SetRelayPeers(s.cfg.RelayPeers); err != nil {
		ln.Close()
		udp.Close()
		rconn.Close()
		return err
	}
	s.conns = s.newConns()
	ln = s.conns.Listener(ln)
	if !s.cfg.Open {
		s.tls = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{s.id.Cert},
			ClientAuth:   tls.RequestClientCert, // checked by pin, in identify
		}
		s.rotateTickets()
		ln = newHandshakeGate(ln, s.tls, handshakeSlots())
	}
	s.ln, s.udp = ln, udp
	s.stun = stun.NewServer(udp, stun.Options{Legacy: s.cfg.Open, Logger: s.log})
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      60 * time.Second,  // above api.MaxWait
		IdleTimeout:       120 * time.Second, // for nodes; see UnauthIdle
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(s.errorLog(), "", 0),
		ConnState:         s.conns.State,
		// OPTIONS * is answered by the handler, in JSON, like any path.
		DisableGeneralOptionsHandler: true,
	}
	s.metrics.register(s)
	if s.cfg.MetricsListen != "" {
		if s.metricsLn, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
			ln.Close()
			udp.Close()
			rconn.Close()
			return fmt.Errorf("metrics listen on %s: %w (see --metrics-listen)", s.cfg.MetricsListen, err)
		}
	}
	return nil
}

// MetricsAddr is where the metrics listener listens, nil without one.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// SetRelayPeers makes the relays at addrs (HOST:PORT) the mesh's other
// relays, resolving their names now; maintain resolves them again every
// relayPeersEvery, so a replica whose address changes behind its name is
// found again without a restart.
func (s *Server) SetRelayPeers(addrs []string) error {
	peers := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		ap, err := s.resolve(a)
		if err != nil {
			return fmt.Errorf("--relay-peer %q: %w", a, err)
		}
		peers[i] = ap
	}
	s.relayMu.Lock()
	s.relayNames, s.relayPeers = slices.Clone(addrs), peers
	s.relayMu.Unlock()
	s.relay.SetMesh(peers)
	return nil
}

// relayPeersEvery is how often the relay peers' names are resolved again.
const relayPeersEvery = time.Minute

// keepRelayPeers resolves the relay peers' names every relayPeersEvery,
// in a loop of its own: a name server that does not answer must not hold
// up maintain, which replicas depend on within a second.
func (s *Server) keepRelayPeers(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(relayPeersEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refreshRelayPeers()
		}
	}
}

// refreshRelayPeers resolves the relay peers' names again, and gives the
// relay the addresses that changed. A name that does not resolve now
// keeps its last address, with a warning.
func (s *Server) refreshRelayPeers() {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	if len(s.relayNames) == 0 {
		return
	}
	peers := slices.Clone(s.relayPeers)
	for i, name := range s.relayNames {
		ap, err := s.resolve(name)
		switch {
		case err != nil:
			s.warnings.warn("relay peer does not resolve; keeping its last address", "relay_peer", name, "address", peers[i], "err", err)
		case ap != peers[i]:
			s.log.Info("relay peer moved", "relay_peer", name, "was", peers[i], "now", ap)
			peers[i] = ap
		}
	}
	if !slices.Equal(peers, s.relayPeers) {
		s.relayPeers = peers
		s.relay.SetMesh(peers)
	}
}

// resolveUDP resolves HOST:PORT to one UDP address, as the system does.
func resolveUDP(addr string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ua.AddrPort(), nil
}

// nextPort turns host:port into host:port+1.
func nextPort(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// Addr is the HTTP API's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// STUNAddr is the STUN server's address.
func (s *Server) STUNAddr() net.Addr { return s.udp.LocalAddr() }

// RelayAddr is the relay's UDP address.
func (s *Server) RelayAddr() net.Addr { return s.relayAddr }

// URL is the base URL nodes use.
func (s *Server) URL() string {
	scheme := "https"
	if s.cfg.Open {
		scheme = "http"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// StorePath names the store: its file, or its URL without the password.
func (s *Server) StorePath() string { return s.store.Path() }

// Identity is the server's TLS identity and admin token.
func (s *Server) Identity() Identity { return s.id }

// CreateKey stores a new join key for this server, as `wire server key
// create` does; the nodes it enrols get tags.
func (s *Server) CreateKey(ctx context.Context, reusable bool, ttl time.Duration, tags ...string) (api.JoinKey, error) {
	return s.store.CreateKey(ctx, s.id.Pin, KeyOptions{Reusable: reusable, Expires: s.cfg.Now().Add(ttl), Tags: tags})
}

// Run serves until ctx ends, then writes what is pending and closes.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- s.http.Serve(s.ln) }()
	go func() { errc <- s.stun.Serve(ctx) }()
	go func() { errc <- s.relay.Serve(ctx) }()
	if s.metricsLn != nil {
		go func() { errc <- scrape.Serve(ctx, s.metricsLn, s.metrics.reg) }()
	}
	s.wg.Add(2)
	go s.maintain(ctx)
	go s.keepRelayPeers(ctx)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	close(s.stopping) // long-polls answer now; their clients poll again elsewhere or later
	shut, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	s.http.Shutdown(shut)
	s.http.Close()
	s.wg.Wait()
	s.flush(context.Background(), false)
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Intervals of the server's housekeeping.
const (
	flushEvery   = 10 * time.Second
	sweepEvery   = 5 * time.Second
	watchEvery   = 250 * time.Millisecond
	ticketsEvery = time.Hour
)

// rotateTickets gives the TLS listener the session ticket keys of now.
func (s *Server) rotateTickets() {
	if s.tls != nil {
		s.tls.SetSessionTicketKeys(ticketKeys(s.tickets, s.cfg.Now()))
	}
}

// maintain writes heartbeats in batches, marks silent nodes offline, and
// reads what other processes (admin commands, other servers sharing the
// store) changed in the store.
func (s *Server) maintain(ctx context.Context) {
	defer s.wg.Done()
	flush, sweep, watch := time.NewTicker(flushEvery), time.NewTicker(sweepEvery), time.NewTicker(watchEvery)
	tickets := time.NewTicker(ticketsEvery)
	defer flush.Stop()
	defer sweep.Stop()
	defer watch.Stop()
	defer tickets.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			s.flush(ctx, false)
		case <-sweep.C:
			s.reg.sweep()
		case <-tickets.C:
			s.rotateTickets()
		case <-watch.C:
			if s.store.Shared() {
				s.flush(ctx, true) // what the other servers must see within a second
			}
			s.sync(ctx)
		}
	}
}

// flush writes the heartbeat facts not yet stored; with urgent, only
// those that other servers sharing the store must see soon.
func (s *Server) flush(ctx context.Context, urgent bool) {
	recs := s.reg.takeSeen(urgent)
	if len(recs) == 0 {
		return
	}
	if err := s.store.SaveSeen(ctx, recs); err != nil {
		s.reg.untake(recs, urgent)
		s.log.Error("saving heartbeats", "nodes", len(recs), "err", err)
	}
}
