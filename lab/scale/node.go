//go:build linux

package main

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/api"
)

// What a node does and when, as node/daemon.go and node/backoff.go do it.
const (
	heartbeatEvery  = api.Heartbeat // unless the server asks for another; each wait 3/4 of it to all of it
	pollWait        = "25s"
	pollTimeout     = 35 * time.Second // pollWait + 10 s
	registerTimeout = 10 * time.Second
	retryFirst      = time.Second // a failed poll is retried after 1, 2, 4, 8, 10, 10... s,
	retryCap        = 10 * time.Second
	enrolAttempts   = 3
	wgPort          = 51820
)

// heartbeatWait is the wait before a heartbeat: from 3/4 of the period
// to all of it, so that nodes started together do not stay in step.
func heartbeatWait(period time.Duration) time.Duration {
	return period/4*3 + rand.N(period/4+1)
}

// jitter is a random duration in [d/2, d]: each retry waits that much.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// idPrefix starts every simulated node's node_id and name: node 42 is
// s00042.
const idPrefix = "s"

func nodeID(i int) string { return string(appendID(nil, i)) }

func appendID(b []byte, i int) []byte {
	b = append(b, idPrefix...)
	for d := 10000; d > 1 && i < d; d /= 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(i), 10)
}

// srcAddr is node i's own loopback address, from 127.1.0.1 on: the
// server limits connections per source address until they show an
// enrolled node's key, and sees each node at its own public address.
func srcAddr(i int) netip.Addr {
	block, rest := i/64000, i%64000
	return netip.AddrFrom4([4]byte{127, byte(1 + block), byte(rest / 250), byte(rest%250 + 1)})
}

// node is one simulated node: its identity and its connections.
type node struct {
	w     *worker
	i     int
	src   netip.Addr
	tls   *tls.Config // the node's certificate, and the server's pin
	wgKey string

	// The poll loop's own.
	pc    *conn
	since []byte
	peers bitset // the map it holds

	syncedAt atomic.Int64 // when it came to hold the whole map (mono); 0: not since the last reset
	arrived  atomic.Int64 // when an answer brought the watched change (mono); 0: not yet

	hbMu     sync.Mutex // one registration at a time
	hc       *conn      // for the enrolment and changes; heartbeats too, unless polls count
	natPort  int
	enrolled bool
	timer    *time.Timer
	// As the daemon: the heartbeat period the server asked for (0: 30 s),
	// when a poll was last answered, and a heartbeat due on the poll's
	// connection.
	hbEvery  atomic.Int64
	lastPoll atomic.Int64 // mono
	due      atomic.Bool
}

func (n *node) heartbeatPeriod() time.Duration {
	if p := time.Duration(n.hbEvery.Load()); p > 0 {
		return p
	}
	return heartbeatEvery
}

// newNode makes node i a fresh identity, as servertest.NewNode does: an
// ed25519 key in a self-signed certificate, and a random WireGuard key.
func newNode(w *worker, i int, pin api.Pin) (*node, error) {
	_, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := api.SelfSigned(priv, "wire-node")
	if err != nil {
		return nil, err
	}
	wg := make([]byte, 32)
	crand.Read(wg)
	return &node{
		w: w, i: i, src: srcAddr(i), tls: api.PinnedTLS(pin, &cert),
		wgKey: base64.StdEncoding.EncodeToString(wg), natPort: wgPort,
		since: append(make([]byte, 0, 32), '0'), peers: newBitset(w.n),
	}, nil
}

// enrol registers the node with the join key, retrying a failure twice
// a second later, and starts its heartbeats.
func (n *node) enrol() bool {
	for attempt := range enrolAttempts {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		_, err := n.register(n.w.key, -1, &n.hc)
		n.w.stats.count(opEnrol, err)
		if err == nil {
			n.enrolled = true
			n.timer = time.AfterFunc(time.Hour, n.tick)
			n.timer.Reset(heartbeatWait(n.heartbeatPeriod()))
			return true
		}
	}
	return false
}

// tick sends a heartbeat, unless the gate is closed, and schedules the
// next. While polls count as signs of life and are answered, the poll
// loop sends it on its connection.
func (n *node) tick() {
	period := n.heartbeatPeriod()
	switch {
	case n.w.gate.isClosed():
	case period > heartbeatEvery && time.Duration(mono()-n.lastPoll.Load()) < period:
		n.due.Store(true)
	default:
		_, err := n.register("", -1, &n.hc)
		n.w.stats.count(opHeartbeat, err)
	}
	n.timer.Reset(heartbeatWait(period))
}

// register sends POST /register: the enrolment with join set, else a
// heartbeat; natPort >= 0 changes the node's nat_port first. It returns
// when the request was sent.
func (n *node) register(join string, natPort int, cp **conn) (sent int64, err error) {
	n.hbMu.Lock()
	defer n.hbMu.Unlock()
	w := n.w
	w.inflight.Add(1)
	defer w.inflight.Add(-1)
	if natPort >= 0 {
		n.natPort = natPort
	}
	deadline := time.Now().Add(registerTimeout)
	if *cp != nil && !(*cp).idle() {
		(*cp).close()
		*cp = nil
	}
	body, req := w.buf(), w.buf()
	defer w.put(body)
	defer w.put(req)
	*body = n.appendRegister((*body)[:0], join)
	*req = appendPost((*req)[:0], w.host, api.PathRegister, *body)
	resp, sent, err := n.exchange(cp, *req, deadline, false)
	if err != nil {
		return sent, err
	}
	return sent, n.done(cp, resp, n.registered(resp))
}

var heartbeatEveryField = []byte(`"heartbeat_every":`)

// registered reads a register answer, keeping the heartbeat period it
// asks for, as the daemon does.
func (n *node) registered(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return discard(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return classify(err)
	}
	secs := 0
	if i := bytes.Index(b, heartbeatEveryField); i >= 0 {
		rest := b[i+len(heartbeatEveryField):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		secs, _ = strconv.Atoi(string(rest[:j]))
	}
	n.hbEvery.Store(int64(api.HeartbeatPeriod(secs)))
	return nil
}

// exchange sends req on *cp, dialing first if there is no connection,
// and once more on a new one if the error is stale (see conn.send). It
// returns when the request that got the answer was sent.
func (n *node) exchange(cp **conn, req []byte, deadline time.Time, idempotent bool) (resp *http.Response, sent int64, err error) {
	for attempt := 0; ; attempt++ {
		if *cp == nil {
			if *cp, err = dial(n.src, n.w.server, n.tls, deadline); err != nil {
				return nil, 0, err
			}
		}
		sent = mono()
		resp, err = (*cp).send(req, deadline, idempotent)
		if err == nil {
			return resp, sent, nil
		}
		(*cp).close()
		*cp = nil
		var re *reqError
		if attempt > 0 || !errors.As(err, &re) || !re.stale {
			return nil, sent, err
		}
	}
}

// done ends an exchange whose answer was read with the given outcome: the
// connection stays for the next request unless it failed (an error
// status aside) or the server closes it.
func (n *node) done(cp **conn, resp *http.Response, err error) error {
	if k := kindOf(err); err != nil && k != kindStatus && k != kindShed || resp.Close {
		(*cp).close()
		*cp = nil
		return err
	}
	(*cp).used = true
	return err
}

// appendRegister appends the node's api.RegisterRequest in JSON, as
// encoding/json writes it (none of its strings needs escaping).
func (n *node) appendRegister(b []byte, join string) []byte {
	b = append(b, `{"node_id":"`...)
	b = appendID(b, n.i)
	b = append(b, `","node_name":"`...)
	b = appendID(b, n.i)
	b = append(b, `","wg_public_key":"`...)
	b = append(b, n.wgKey...)
	b = append(b, `","port":`...)
	b = strconv.AppendInt(b, wgPort, 10)
	b = append(b, `,"nat_port":`...)
	b = strconv.AppendInt(b, int64(n.natPort), 10)
	if join != "" {
		b = append(b, `,"join_key":"`...)
		b = append(b, join...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// discard reads the rest of an answer, and turns an error status into an
// error.
func discard(resp *http.Response) error {
	_, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return classify(err)
	}
	if resp.StatusCode != http.StatusOK {
		return classify(&statusError{code: resp.StatusCode, retryAfter: api.RetryAfter(resp.Header)})
	}
	return nil
}

// pollLoop long-polls for peer changes for ever, backing off after a
// failure as the daemon does (a 401 waits a heartbeat period); the gate
// holds it, and reopening the gate ends its backoff (every node
// reconnects at once).
func (n *node) pollLoop() {
	var next time.Duration // zero: retryFirst
	for {
		n.w.gate.pass()
		if n.due.Swap(false) {
			_, err := n.register("", -1, &n.pc)
			n.w.stats.count(opHeartbeat, err)
		}
		err := n.poll()
		n.w.stats.count(opPoll, err)
		if err == nil {
			n.lastPoll.Store(mono())
			next = 0
			continue
		}
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusUnauthorized {
			next = max(next, heartbeatEvery)
		}
		if errors.As(err, &se) && se.retryAfter > 0 {
			next = max(next, 2*se.retryAfter) // as the daemon: the server said when, and the wait is from the step's upper half
		}
		next = max(next, retryFirst)
		n.w.gate.sleep(jitter(next))
		next = min(2*next, max(retryCap, next))
	}
}

var (
	pathPeersSince = []byte(api.PathPeers + "?since=")
	andWait        = []byte("&wait=" + pollWait)
)

// poll sends one GET /peers?since=VERSION&wait=25s and applies the answer.
func (n *node) poll() error {
	w := n.w
	w.inflight.Add(1)
	defer w.inflight.Add(-1)
	deadline := time.Now().Add(pollTimeout)
	req := w.buf()
	defer w.put(req)
	*req = appendGet((*req)[:0], w.host, pathPeersSince, n.since, andWait)
	resp, _, err := n.exchange(&n.pc, *req, deadline, true)
	if err != nil {
		return err
	}
	return n.done(&n.pc, resp, n.read(resp))
}

// read reads a /peers answer and applies it to the node's map.
func (n *node) read(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return discard(resp)
	}
	w := n.w
	a := w.answers.Get().(*answer)
	defer w.answers.Put(a)
	a.reset(*w.watch.Load())
	br := w.reader(resp.Body)
	err := a.read(br)
	w.putReader(br)
	resp.Body.Close()
	if err != nil {
		if err = classify(err); kindOf(err) == kindOther {
			err = &reqError{kind: kindBody, err: errors.Unwrap(err)}
		}
		return err
	}
	n.apply(a)
	return nil
}

// apply folds an answer into the node's map, as the daemon's merge does.
func (n *node) apply(a *answer) {
	n.since = append(n.since[:0], a.version...)
	if a.full {
		copy(n.peers, a.seen)
	} else {
		n.peers.or(a.seen)
	}
	for _, id := range a.removed {
		n.peers.unset(id)
	}
	now := mono()
	if a.watched {
		n.arrived.CompareAndSwap(0, now)
	}
	if n.syncedAt.Load() == 0 && n.peers.count() >= int(n.w.target.Load()) {
		n.syncedAt.Store(now)
	}
}
