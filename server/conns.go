package server

import (
	"cmp"
	"crypto/tls"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/connlimit"
)

// Defaults of the connection limits.
const (
	// DefaultMaxConnsPerIP caps the connections from one address that
	// have not shown an enrolled node's key. Nodes behind one NAT share an
	// address, but each holds one or two connections, and once enrolled
	// they no longer count.
	DefaultMaxConnsPerIP = 128
	// DefaultUnauthIdle is how long a connection that has shown no
	// enrolled node's key may sit idle between requests. Nodes keep theirs
	// for the server's IdleTimeout.
	DefaultUnauthIdle = 10 * time.Second
	// fdReserve are the file descriptors kept for everything but HTTP
	// connections: the store, the UDP sockets, logs.
	fdReserve = 128
)

// defaultMaxConns is the cap on all HTTP connections: what the process's
// open-file limit leaves after fdReserve.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<20 {
		return 1 << 16
	}
	return max(int(lim.Cur)-fdReserve, 16)
}

// newConns bounds the API's connections: by source address, trusting
// those that have shown an enrolled node's key (see connlimit).
func (s *Server) newConns() *connlimit.Tracker {
	limits := connlimit.Limits{
		Total:  cmp.Or(s.cfg.MaxConns, defaultMaxConns()),
		PerKey: cmp.Or(s.cfg.MaxConnsPerIP, DefaultMaxConnsPerIP),
		Idle:   cmp.Or(s.cfg.UnauthIdle, DefaultUnauthIdle),
	}
	byIP := func(c net.Conn) (string, bool) { return remoteIP(c).String(), false }
	return connlimit.New(limits, byIP, s.isNode)
}

// isNode says whether c showed the key of an enrolled node. The TLS
// handshake is done once a request has been read.
func (s *Server) isNode(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return false
	}
	_, ok = s.reg.byPin(api.PinOf(certs[0]).String())
	return ok
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
