// Package connlimit bounds the connections an HTTP server holds, in total
// and per source, and gives trusted clients priority: when a limit is
// reached, the oldest untrusted connection gives way to the new one, and
// if every connection is trusted, the new one is refused. Untrusted
// connections also get a short idle timeout, so that idle ones do not pile
// up where a file-descriptor limit would stop everyone.
//
// What a source is and who is trusted is the caller's to say: the
// coordination server counts by IP address and trusts connections that
// have shown an enrolled node's key; a node's control socket counts by
// user and trusts root.
package connlimit

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are a Tracker's bounds.
type Limits struct {
	Total  int           // all connections
	PerKey int           // untrusted connections from one source
	Idle   time.Duration // how long an untrusted connection may idle
}

// Tracker counts the connections of one listener. Use Listener on the
// listener and State as the http.Server's ConnState.
type Tracker struct {
	limits Limits
	// classify names a new connection's source, and says whether it is
	// trusted from the start.
	classify func(net.Conn) (key string, trusted bool)
	// promote, if set, says at each request of an untrusted connection
	// whether it has become trusted (a TLS client key, known now).
	promote func(net.Conn) bool

	mu     sync.Mutex
	total  int
	byConn map[net.Conn]*tracked // by the accepted (not TLS) conn
	oldest list.List             // of untrusted *tracked, oldest first
	byKey  map[string]*list.List

	refused, evicted atomic.Uint64
}

// tracked is one accepted connection.
type tracked struct {
	c       net.Conn
	key     string
	trusted bool
	all     *list.Element // in Tracker.oldest, while untrusted
	mine    *list.Element // in Tracker.byKey[key], while untrusted
	timer   *time.Timer   // the idle timeout, while idle and untrusted
}

// New returns a Tracker. promote may be nil.
func New(l Limits, classify func(net.Conn) (string, bool), promote func(net.Conn) bool) *Tracker {
	return &Tracker{
		limits: l, classify: classify, promote: promote,
		byConn: make(map[net.Conn]*tracked), byKey: make(map[string]*list.List),
	}
}

// Listener wraps ln so that every connection it accepts is counted and
// limited.
func (t *Tracker) Listener(ln net.Listener) net.Listener { return &listener{ln, t} }

type listener struct {
	net.Listener
	t *Tracker
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.t.admit(c) {
			return c, nil
		}
	}
}

// admit counts a new connection, making room for it if a limit is
// reached, or closes it and reports false if there is none to make.
func (t *Tracker) admit(c net.Conn) bool {
	key, trusted := t.classify(c)
	t.mu.Lock()
	var victim *tracked
	switch {
	case !trusted && t.byKey[key] != nil && t.byKey[key].Len() >= t.limits.PerKey:
		victim = t.byKey[key].Front().Value.(*tracked)
	case t.total >= t.limits.Total:
		if e := t.oldest.Front(); e != nil {
			victim = e.Value.(*tracked)
		}
	}
	if victim == nil && t.total >= t.limits.Total {
		t.mu.Unlock()
		t.refused.Add(1)
		c.Close()
		return false
	}
	if victim != nil {
		t.forget(victim)
	}
	tr := &tracked{c: c, key: key, trusted: trusted}
	t.byConn[c] = tr
	t.total++
	if !trusted {
		t.list(tr)
	}
	t.mu.Unlock()
	if victim != nil {
		t.evicted.Add(1)
		victim.c.Close()
	}
	return true
}

// list puts tr on the lists of connections that may give way.
func (t *Tracker) list(tr *tracked) {
	tr.all = t.oldest.PushBack(tr)
	if t.byKey[tr.key] == nil {
		t.byKey[tr.key] = list.New()
	}
	tr.mine = t.byKey[tr.key].PushBack(tr)
}

// unlist takes tr off them.
func (t *Tracker) unlist(tr *tracked) {
	if tr.all == nil {
		return
	}
	t.oldest.Remove(tr.all)
	l := t.byKey[tr.key]
	l.Remove(tr.mine)
	if l.Len() == 0 {
		delete(t.byKey, tr.key)
	}
	tr.all, tr.mine = nil, nil
}

// forget stops counting tr. Callers hold t.mu.
func (t *Tracker) forget(tr *tracked) {
	if t.byConn[tr.c] != tr {
		return
	}
	delete(t.byConn, tr.c)
	t.total--
	t.unlist(tr)
	if tr.timer != nil {
		tr.timer.Stop()
	}
}

// State is the http.Server's ConnState hook.
func (t *Tracker) State(c net.Conn, st http.ConnState) {
	raw := c
	for { // the TLS conn's, and the one under any wrapper of it
		u, ok := raw.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		raw = u.NetConn()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.byConn[raw]
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		if tr.timer != nil {
			tr.timer.Stop()
		}
		if !tr.trusted && t.promote != nil && t.promote(c) {
			tr.trusted = true
			t.unlist(tr)
		}
	case http.StateIdle:
		if !tr.trusted {
			tr.timer = time.AfterFunc(t.limits.Idle, func() { tr.c.Close() })
		}
	case http.StateClosed, http.StateHijacked:
		t.forget(tr)
	}
}

// Stats are a Tracker's counts.
type Stats struct {
	Open    int    // connections held now
	Refused uint64 // refused: every connection was trusted
	Evicted uint64 // closed to make room for a newer one
}

// Stats returns the counts now.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	open := t.total
	t.mu.Unlock()
	return Stats{Open: open, Refused: t.refused.Load(), Evicted: t.evicted.Load()}
}
