package server

import (
	"container/list"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/api"
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

// conns bounds the server's HTTP connections, in total and per source
// address, and gives connections of enrolled nodes priority: when a limit
// is reached, the oldest connection that has not shown an enrolled node's
// key gives way to the new one, and if every connection is a node's, the
// new one is refused. Connections that never showed a node's key also get
// a short idle timeout, so that idle ones do not pile up.
type conns struct {
	maxTotal, maxPerIP int
	idle               time.Duration
	enrolled           func(pin string) bool

	mu     sync.Mutex
	total  int
	byConn map[net.Conn]*tracked // by the accepted (not TLS) conn
	oldest list.List             // of unauthenticated *tracked, oldest first
	byIP   map[netip.Addr]*list.List

	refused, evicted atomic.Uint64
}

// tracked is one accepted connection.
type tracked struct {
	c      net.Conn
	ip     netip.Addr
	authed bool          // it showed an enrolled node's key
	all    *list.Element // in conns.oldest, while not authed
	mine   *list.Element // in conns.byIP[ip], while not authed
	timer  *time.Timer   // the idle timeout, while idle and not authed
}

func newConns(maxTotal, maxPerIP int, idle time.Duration, enrolled func(string) bool) *conns {
	return &conns{
		maxTotal: maxTotal, maxPerIP: maxPerIP, idle: idle, enrolled: enrolled,
		byConn: make(map[net.Conn]*tracked), byIP: make(map[netip.Addr]*list.List),
	}
}

// listener wraps ln so that every connection it accepts is counted and
// limited.
func (cs *conns) listener(ln net.Listener) net.Listener { return &limitedListener{ln, cs} }

type limitedListener struct {
	net.Listener
	cs *conns
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.cs.admit(c) {
			return c, nil
		}
	}
}

// admit counts a new connection, making room for it if a limit is
// reached, or closes it and reports false if there is none to make.
func (cs *conns) admit(c net.Conn) bool {
	ip := remoteIP(c)
	cs.mu.Lock()
	var victim *tracked
	switch {
	case cs.byIP[ip] != nil && cs.byIP[ip].Len() >= cs.maxPerIP:
		victim = cs.byIP[ip].Front().Value.(*tracked)
	case cs.total >= cs.maxTotal:
		if e := cs.oldest.Front(); e != nil {
			victim = e.Value.(*tracked)
		}
	}
	if victim == nil && cs.total >= cs.maxTotal {
		cs.mu.Unlock()
		cs.refused.Add(1)
		c.Close()
		return false
	}
	if victim != nil {
		cs.forget(victim)
	}
	t := &tracked{c: c, ip: ip}
	cs.byConn[c] = t
	cs.total++
	t.all = cs.oldest.PushBack(t)
	if cs.byIP[ip] == nil {
		cs.byIP[ip] = list.New()
	}
	t.mine = cs.byIP[ip].PushBack(t)
	cs.mu.Unlock()
	if victim != nil {
		cs.evicted.Add(1)
		victim.c.Close()
	}
	return true
}

// forget stops counting t. Callers hold cs.mu.
func (cs *conns) forget(t *tracked) {
	if cs.byConn[t.c] != t {
		return
	}
	delete(cs.byConn, t.c)
	cs.total--
	cs.unlist(t)
	if t.timer != nil {
		t.timer.Stop()
	}
}

// unlist takes t off the lists of connections that may give way.
func (cs *conns) unlist(t *tracked) {
	if t.all == nil {
		return
	}
	cs.oldest.Remove(t.all)
	l := cs.byIP[t.ip]
	l.Remove(t.mine)
	if l.Len() == 0 {
		delete(cs.byIP, t.ip)
	}
	t.all, t.mine = nil, nil
}

// state is the http.Server's ConnState hook.
func (cs *conns) state(c net.Conn, st http.ConnState) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t, ok := cs.byConn[raw]
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		if t.timer != nil {
			t.timer.Stop()
		}
		if !t.authed && cs.isNode(c) {
			t.authed = true
			cs.unlist(t)
		}
	case http.StateIdle:
		if !t.authed {
			t.timer = time.AfterFunc(cs.idle, func() { t.c.Close() })
		}
	case http.StateClosed, http.StateHijacked:
		cs.forget(t)
	}
}

// isNode says whether c showed the key of an enrolled node. The TLS
// handshake is done once a request has been read.
func (cs *conns) isNode(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	certs := tc.ConnectionState().PeerCertificates
	return len(certs) > 0 && cs.enrolled(api.PinOf(certs[0]).String())
}

// open returns how many connections are counted now.
func (cs *conns) open() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.total
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
