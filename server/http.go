package server

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
	"golang.org/x/net/http/httpguts"
)

// caller is who made a request.
type caller struct {
	node  *node // nil for the admin and, in --open mode, for everyone
	admin bool
}

// nodeID is the calling node's id, "" for the admin and in --open mode.
func (c caller) nodeID() string {
	if c.node == nil {
		return ""
	}
	return c.node.NodeID
}

// Handler returns the HTTP API. Every answer it gives is JSON: paths are
// matched exactly, with no redirects to cleaned paths, and a handler's
// panic becomes a 500.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		api.PathHealth:      {http.MethodGet, s.handleHealth},
		api.PathIP:          {http.MethodGet, s.handleIP},
		api.PathRegister:    {http.MethodPost, s.handleRegister},
		api.PathPeers:       {http.MethodGet, s.authed(s.handlePeers)},
		api.PathStatus:      {http.MethodGet, s.authed(s.handleStatus)},
		api.PathPunch:       {http.MethodPost, s.authed(s.handlePunch)},
		api.PathRelay:       {http.MethodPost, s.authed(s.handleRelay)},
		api.PathRelayStream: {http.MethodGet, s.authed(s.handleRelayStream)},
		api.PathOffline:     {http.MethodPost, s.authed(s.handleOffline)},
	}
	return s.guard(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rt, ok := routes[r.URL.Path]
		w := &statusWriter{ResponseWriter: rw}
		defer func() {
			route := r.URL.Path
			if !ok {
				route = "other" // any path: the label's values stay few
			}
			s.metrics.observeRequest(route, cmp.Or(w.code, http.StatusOK))
		}()
		if !ok {
			notFound(w, r, routes)
			return
		}
		if r.Method != rt.method {
			w.Header().Set("Allow", rt.method)
			httpError(w, http.StatusMethodNotAllowed, "%s %s: use %s", r.Method, r.URL.Path, rt.method)
			return
		}
		rt.h(w, r)
	}))
}

// route is an endpoint: the one method it answers, and its handler.
type route struct {
	method string
	h      http.HandlerFunc
}

func notFound(w http.ResponseWriter, r *http.Request, routes map[string]route) {
	if clean := path.Clean("/" + r.URL.Path); clean != r.URL.Path {
		if _, ok := routes[clean]; ok {
			httpError(w, http.StatusNotFound, "no such endpoint: %q (did you mean %s?)", r.URL.Path, clean)
			return
		}
	}
	httpError(w, http.StatusNotFound, "no such endpoint: %q", r.URL.Path)
}

type authedHandler func(w http.ResponseWriter, r *http.Request, c caller)

// authed admits the admin (bearer token) and enrolled nodes (client
// certificate); in --open mode, everyone.
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.identify(r)
		if err != nil {
			unauthorized(w, err)
			return
		}
		h(w, r, c)
	}
}

func (s *Server) identify(r *http.Request) (caller, error) {
	if s.cfg.Open {
		return caller{}, nil
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.id.AdminToken)) == 1 {
			return caller{admin: true}, nil
		}
		return caller{}, errors.New("wrong admin token")
	}
	pin, err := clientPin(r)
	if err != nil {
		return caller{}, err
	}
	if pin == "" {
		return caller{}, errors.New("credentials required: a node's certificate or the admin token (Authorization: Bearer, from admin.token in the server's state dir)")
	}
	n, ok := s.reg.byPin(pin)
	if !ok && s.store.Shared() {
		// Perhaps it enrolled through another server a moment ago.
		s.reg.awaitSync(r.Context())
		n, ok = s.reg.byPin(pin)
	}
	if !ok {
		return caller{}, ErrNotEnrolled
	}
	if at, expired := s.reg.expiredAt(n); expired {
		return caller{}, &ExpiredError{At: at}
	}
	return caller{node: n}, nil
}

// clientPin is the pin of the node key the client presented, "" if it
// presented none. Node keys are ed25519, as wire up makes them and the
// README documents; other kinds are refused rather than enrolled.
func clientPin(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", nil
	}
	cert := r.TLS.PeerCertificates[0]
	if cert.PublicKeyAlgorithm != x509.Ed25519 {
		return "", fmt.Errorf("the client certificate has a %v key: node keys are ed25519 (wire up makes one, node.key)", cert.PublicKeyAlgorithm)
	}
	return api.PinOf(cert).String(), nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	// Public: counters, never a walk of the registry under its lock.
	total, online := s.reg.count()
	h := api.Health{OK: true, Version: s.cfg.Version, Total: total, Online: online}
	if !s.cfg.Open {
		h.STUNPort = s.stunPort()
		h.RelayPort = s.RelayAddr().(*net.UDPAddr).Port
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) handleIP(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.IP{IP: s.clientIP(r).String()})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, c caller) {
	writeJSON(w, http.StatusOK, s.reg.status(s.cfg.Version, c.nodeID()))
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := parseRegister(body, !s.cfg.Open)
	if err != nil {
		s.metrics.refused("bad_request")
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	e := enrolment{req: req, publicIP: s.clientIP(r).String()}
	if !s.cfg.Open {
		if e.pin, err = clientPin(r); err != nil {
			s.metrics.refused("no_node_key")
			httpError(w, http.StatusUnauthorized, "%v", err)
			return
		}
		if e.pin == "" {
			s.metrics.refused("no_node_key")
			httpError(w, http.StatusUnauthorized, "present the node's TLS certificate (wire up does this)")
			return
		}
		if req.JoinKey != "" {
			k, _ := api.ParseJoinKey(req.JoinKey) // checked by parseRegister
			e.key = &k
		}
	}
	rec, err := s.reg.register(r.Context(), e)
	if err != nil {
		s.registerError(w, req, err)
		return
	}
	resp := api.RegisterResponse{OK: true, VPNIP: rec.VPNIP, YourIP: e.publicIP}
	if !s.cfg.Open {
		resp.Subnet = s.cfg.Subnet.String()
		resp.STUNPort = s.stunPort()
		resp.DNSDomain = s.cfg.DNSDomain
		resp.HeartbeatEvery = int(api.PollHeartbeat / time.Second)
		resp.NodeName = rec.NodeName
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) registerError(w http.ResponseWriter, req api.RegisterRequest, err error) {
	s.metrics.refused(refusalReason(err))
	var conflict *ErrConflict
	switch {
	case errors.As(err, &conflict):
		httpError(w, http.StatusConflict, "%s of %q is already taken by another node", conflict.Field, req.NodeName)
	case errors.Is(err, ErrKeyInvalid), errors.Is(err, ErrKeyExpired), errors.Is(err, ErrKeyUsed), errors.Is(err, ErrNotEnrolled),
		errors.Is(err, ErrNodeExpired):
		unauthorized(w, err)
	case errors.Is(err, errForbidden):
		httpError(w, http.StatusForbidden, "%v", err)
	case errors.Is(err, ErrSubnetFull):
		httpError(w, http.StatusInsufficientStorage, "%v", err)
	case errors.Is(err, ErrStoreUnavailable):
		// The node retries; a heartbeat of a known node never gets here.
		s.log.Warn("register refused: the store is unavailable", "node", req.NodeName, "err", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "the server cannot reach its store just now: try again in a few seconds")
	default:
		s.log.Error("register failed", "node", req.NodeName, "err", err)
		httpError(w, http.StatusInternalServerError, "server could not store the registration; see its log")
	}
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	wait, err := parseWait(q.Get("wait"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if c.node != nil {
		s.reg.alive(c.node) // a node that polls is online, heartbeat or not
	}
	since := q.Get("since")
	if q.Has("since") && since == "" {
		since = "0" // ask for a full answer with a version
	}
	if body, ok := s.reg.sharedFull(since, c.nodeID()); ok {
		s.writeFull(w, r, func() { writeBody(w, body) })
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	woke := false // by a change, whose time to this answer is measured
	for {
		resp, changed := s.reg.peers(since, c.nodeID())
		if changed == nil && resp.Full {
			s.writeFull(w, r, func() { writeJSON(w, http.StatusOK, resp) })
			return
		}
		if changed == nil {
			writeJSON(w, http.StatusOK, resp)
			if woke {
				s.metrics.propagation.Observe(time.Since(s.reg.lastChange()).Seconds())
			}
			return
		}
		switch s.waitPoll(r.Context(), changed, timer.C) {
		case pollChanged:
			woke = true
		case pollDone: // nothing changed yet: the same version
			writeJSON(w, http.StatusOK, resp)
			return
		case pollGone:
			return
		}
	}
}

// How a long-poll's wait ends.
type pollEnd int

const (
	pollChanged pollEnd = iota // the mesh changed
	pollDone                   // its time is up, or the server stops
	pollGone                   // its client went
)

// waitPoll waits for a change (changed closes), the end of a long-poll's
// time or of the server, or its client to go, counting it as waiting.
func (s *Server) waitPoll(ctx context.Context, changed <-chan struct{}, timeout <-chan time.Time) pollEnd {
	s.metrics.polls.Add(1)
	defer s.metrics.polls.Add(-1)
	select {
	case <-changed:
		return pollChanged
	case <-timeout:
		return pollDone
	case <-s.stopping:
		return pollDone
	case <-ctx.Done():
		return pollGone
	}
}

func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, nerr := strconv.ParseUint(s, 10, 64) // the seed's plain seconds
		if nerr != nil && !errors.Is(nerr, strconv.ErrRange) {
			return 0, badf("wait %q: want a duration such as 25s, or seconds", clip(s))
		}
		// Any number of seconds over the cap is the cap; multiplying
		// first could overflow into a negative duration.
		d = api.MaxWait
		if nerr == nil && secs < uint64(api.MaxWait/time.Second) {
			d = time.Duration(secs) * time.Second
		}
	}
	if d < 0 {
		return 0, badf("wait %q: want a positive duration", clip(s))
	}
	return min(d, api.MaxWait), nil
}

func (s *Server) handlePunch(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := parsePunch(body, !s.cfg.Open)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !s.cfg.Open && (c.node == nil || s.reg.vpnIP(c.node) != req.FromVPNIP) {
		httpError(w, http.StatusForbidden, "from_vpn_ip %s is not the calling node's address", req.FromVPNIP)
		return
	}
	if _, ok := s.reg.lookupIP(req.ToVPNIP, c.nodeID()); !ok {
		httpError(w, http.StatusNotFound, "to_vpn_ip %s: no such node", req.ToVPNIP)
		return
	}
	writeJSON(w, http.StatusOK, s.punches.attempt(req.FromVPNIP, req.ToVPNIP))
}

func (s *Server) stunPort() int { return s.STUNAddr().(*net.UDPAddr).Port }

func (s *Server) handleRelay(w http.ResponseWriter, r *http.Request, c caller) {
	if c.node == nil {
		httpError(w, http.StatusForbidden, "only an enrolled node can use the relay")
		return
	}
	token, err := s.reg.relayToken(c.node)
	if err != nil {
		httpError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	port := s.relayAddr.(*net.UDPAddr).Port
	writeJSON(w, http.StatusOK, api.RelayResponse{Port: port, Token: token})
}

// handleRelayStream hands the calling node's connection to the relay, for
// a node whose UDP is blocked: the request asks to upgrade to
// api.RelayUpgrade, the answer is 101 Switching Protocols, and the rest of
// the connection is the relay's stream (relay.Server.ServeStream), bound
// to the node's VPN address. It lasts until either side closes it or the
// server stops.
func (s *Server) handleRelayStream(w http.ResponseWriter, r *http.Request, c caller) {
	var owner netip.Addr
	switch {
	case c.node != nil:
		owner, _ = netip.ParseAddr(c.node.VPNIP)
	case !s.cfg.Open:
		httpError(w, http.StatusForbidden, "only an enrolled node can use the relay")
		return
	}
	if !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), api.RelayUpgrade) {
		w.Header().Set("Upgrade", api.RelayUpgrade)
		w.Header().Set("Connection", "Upgrade")
		httpError(w, http.StatusUpgradeRequired, "the relay stream is a protocol upgrade: Connection: Upgrade, Upgrade: %s", api.RelayUpgrade)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		httpError(w, http.StatusHTTPVersionNotSupported, "the relay stream needs HTTP/1.1: %v", err)
		return
	}
	conn.SetDeadline(time.Time{}) // the server's read and write timeouts are for requests
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.RelayUpgrade)
	if err := rw.Flush(); err != nil {
		conn.Close()
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	// What the client sent after its request is in rw's buffer.
	stream := struct {
		io.Reader
		io.Writer
		io.Closer
	}{rw.Reader, conn, conn}
	if err := s.relay.ServeStream(ctx, stream, owner); err != nil {
		s.log.Debug("relay stream ended", "node", c.nodeID(), "err", err)
	}
}

// handleOffline takes the calling node out of the online set at once (wire
// down), and off the relay; its next heartbeat brings it back.
func (s *Server) handleOffline(w http.ResponseWriter, r *http.Request, c caller) {
	if c.node == nil {
		httpError(w, http.StatusForbidden, "only an enrolled node can say it goes offline")
		return
	}
	addr, at, err := s.reg.offline(c.node)
	if err != nil {
		httpError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	s.relay.Forget(addr)
	// For the servers sharing the store, and this one after a restart;
	// without it the node is offline here, and elsewhere once silent.
	if err := s.store.SaveDown(r.Context(), c.node.NodeID, at); err != nil {
		s.warnings.warn("recording that a node goes down", "node_id", c.node.NodeID, "err", err)
	}
	writeJSON(w, http.StatusOK, api.OK{OK: true})
}

// readBody reads a capped request body, answering the error itself.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBody)
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, "reading body: %v", err)
		return nil, false
	}
	return body, true
}

// clientIP is the request's source address, or, when it comes from a
// trusted proxy, the last address in X-Forwarded-For that is not one.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		ip = hop.Unmap()
		if !s.trusted(ip) {
			break
		}
	}
	return ip
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// httpError is the one place where errors become responses.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: strings.TrimSpace(fmt.Sprintf(format, args...))})
}

// unauthorized answers a request whose credentials do not admit it: 401,
// with a code a node acts on if its enrolment expired.
func unauthorized(w http.ResponseWriter, err error) {
	e := api.Error{Error: err.Error()}
	if errors.Is(err, ErrNodeExpired) {
		e.Code = api.CodeNodeExpired
	}
	writeJSON(w, http.StatusUnauthorized, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// refusalReason is a refused registration's reason, as metrics count it.
func refusalReason(err error) string {
	var conflict *ErrConflict
	switch {
	case errors.As(err, &conflict):
		return "conflict"
	case errors.Is(err, ErrKeyInvalid):
		return "key_invalid"
	case errors.Is(err, ErrKeyExpired):
		return "key_expired"
	case errors.Is(err, ErrKeyUsed):
		return "key_used"
	case errors.Is(err, ErrNotEnrolled):
		return "not_enrolled"
	case errors.Is(err, ErrNodeExpired):
		return "node_expired"
	case errors.Is(err, errForbidden):
		return "forbidden"
	case errors.Is(err, ErrSubnetFull):
		return "subnet_full"
	case errors.Is(err, ErrStoreUnavailable):
		return "store_unavailable"
	}
	return "error"
}
