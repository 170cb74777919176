//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wire-mesh/wire/api"
)

// The simulator runs in worker processes, each with a share of the nodes:
// a process may hold only so many connections (RLIMIT_NOFILE, 20,000 on
// the build machines), and each node holds two. A worker reads requests
// from stdin and answers each on stdout, one JSON line each.

// workerConfig is the first line a worker reads.
type workerConfig struct {
	Server  string // host:port of the server
	JoinKey string // reusable
	Lo, Hi  int    // this worker's nodes
	N       int    // all nodes
}

// request is what the coordinator asks of a worker.
type request struct {
	Op          string `json:"op"`
	Concurrency int    `json:"concurrency,omitempty"` // enrol: at once, in this worker
	Target      int    `json:"target,omitempty"`      // poll: the size of the whole map
	Node        int    `json:"node,omitempty"`        // watch, change, arrivals
	Port        int    `json:"port,omitempty"`        // watch, change
	Sent        int64  `json:"sent,omitempty"`        // arrivals: when the change was sent; syncs: the phase's start
}

// reply is a worker's answer.
type reply struct {
	Err       string            `json:"err,omitempty"`
	Enrolled  int               `json:"enrolled,omitempty"`
	Done      int64             `json:"done,omitempty"`       // enrol: when it ended (mono)
	Synced    int               `json:"synced,omitempty"`     // nodes that hold the whole map
	SyncedMax int64             `json:"synced_max,omitempty"` // the last of them (mono)
	Inflight  int64             `json:"inflight,omitempty"`   // requests under way
	Arrived   int               `json:"arrived,omitempty"`    // nodes that got the watched change
	Counts    counts            `json:"counts"`
	Codes     map[int]uint64    `json:"codes,omitempty"`   // HTTP error statuses seen
	Samples   map[string]string `json:"samples,omitempty"` // an error of each op and kind
	Sent      int64             `json:"sent,omitempty"`    // change: when it was sent (mono)
	Delays    []int64           `json:"delays,omitempty"`  // arrivals, syncs: ns after Sent
}

// op is a kind of request a node makes.
type op int

const (
	opEnrol op = iota
	opHeartbeat
	opPoll
	nOps
)

var opNames = [nOps]string{"enrolment", "heartbeat", "poll"}

// counts are requests by op and by what became of them.
type counts [nOps][nKinds]uint64

func (c counts) sub(o counts) (d counts) {
	for i := range c {
		for k := range c[i] {
			d[i][k] = c[i][k] - o[i][k]
		}
	}
	return d
}

func (c counts) add(o counts) counts {
	for i := range c {
		for k := range c[i] {
			c[i][k] += o[i][k]
		}
	}
	return c
}

// failed is the number of failed requests of the given ops.
func (c counts) failed(ops ...op) (n uint64) {
	for _, o := range ops {
		for k := kindOK + 1; k < nKinds; k++ {
			if k != kindShed {
				n += c[o][k]
			}
		}
	}
	return n
}

// stats count a worker's requests.
type stats struct {
	c       [nOps][nKinds]atomic.Uint64
	mu      sync.Mutex
	codes   map[int]uint64
	samples map[string]string
}

func (s *stats) count(o op, err error) {
	if err == nil {
		s.c[o][kindOK].Add(1)
		return
	}
	k := kindOf(err)
	s.c[o][k].Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var se *statusError
	if errors.As(err, &se) {
		s.codes[se.code]++
	}
	s.samples[opNames[o]+" "+k.String()] = err.Error()
}

func (s *stats) snapshot(r *reply) {
	for o := range s.c {
		for k := range s.c[o] {
			r.Counts[o][k] = s.c[o][k].Load()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Codes, r.Samples = make(map[int]uint64), make(map[string]string)
	for c, n := range s.codes {
		r.Codes[c] = n
	}
	for k, v := range s.samples {
		r.Samples[k] = v
	}
}

// worker is one simulator process's nodes.
type worker struct {
	nodes  []*node
	n      int // all nodes, of all workers
	server netip.AddrPort
	host   string
	key    string

	gate     gate
	watch    atomic.Pointer[watch]
	target   atomic.Int64
	inflight atomic.Int64
	stats    stats

	bufs    sync.Pool // *[]byte, for requests
	readers sync.Pool // *bufio.Reader, for answers' bodies
	answers sync.Pool // *answer
}

func newWorker(cfg workerConfig) (*worker, error) {
	k, err := api.ParseJoinKey(cfg.JoinKey)
	if err != nil {
		return nil, err
	}
	server, err := netip.ParseAddrPort(cfg.Server)
	if err != nil {
		return nil, err
	}
	w := &worker{n: cfg.N, server: server, host: cfg.Server, key: cfg.JoinKey}
	w.gate.opened = make(chan struct{})
	w.stats.codes, w.stats.samples = make(map[int]uint64), make(map[string]string)
	w.watch.Store(&watch{node: -1})
	w.target.Store(int64(cfg.N))
	w.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	w.readers.New = func() any { return bufio.NewReaderSize(nil, 4096) }
	w.answers.New = func() any { return newAnswer(cfg.N) }
	for i := cfg.Lo; i < cfg.Hi; i++ {
		n, err := newNode(w, i, k.Pin)
		if err != nil {
			return nil, err
		}
		w.nodes = append(w.nodes, n)
	}
	return w, nil
}

func (w *worker) buf() *[]byte  { return w.bufs.Get().(*[]byte) }
func (w *worker) put(b *[]byte) { w.bufs.Put(b) }

func (w *worker) reader(r io.Reader) *bufio.Reader {
	br := w.readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func (w *worker) putReader(br *bufio.Reader) {
	br.Reset(nil)
	w.readers.Put(br)
}

// handle answers one request.
func (w *worker) handle(req request) reply {
	var r reply
	switch req.Op {
	case "enrol":
		r = w.enrol(max(req.Concurrency, 1))
	case "poll":
		w.target.Store(int64(req.Target))
		for _, n := range w.nodes {
			if n.enrolled {
				n.syncedAt.Store(0)
				go n.pollLoop()
			}
		}
	case "status":
		r = w.status()
	case "pause":
		w.gate.close()
	case "resume":
		for _, n := range w.nodes {
			n.syncedAt.Store(0)
		}
		w.gate.open()
	case "watch":
		w.watch.Store(&watch{node: req.Node, port: req.Port})
		for _, n := range w.nodes {
			n.arrived.Store(0)
		}
	case "change":
		r = w.change(req.Node, req.Port)
	case "arrivals":
		r = w.arrivals(req.Node, req.Sent)
	case "syncs":
		for _, n := range w.nodes {
			if t := n.syncedAt.Load(); t != 0 {
				r.Delays = append(r.Delays, t-req.Sent)
			}
		}
	default:
		r.Err = fmt.Sprintf("unknown op %q", req.Op)
	}
	return r
}

// enrol enrols the worker's nodes, c at a time.
func (w *worker) enrol(c int) reply {
	sem := make(chan struct{}, c)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for _, n := range w.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if n.enrol() {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return reply{Enrolled: int(ok.Load()), Done: mono()}
}

func (w *worker) status() reply {
	r := reply{Inflight: w.inflight.Load()}
	for _, n := range w.nodes {
		if t := n.syncedAt.Load(); t != 0 {
			r.Synced++
			r.SyncedMax = max(r.SyncedMax, t)
		}
		if n.arrived.Load() != 0 {
			r.Arrived++
		}
	}
	w.stats.snapshot(&r)
	return r
}

// change has node i send a heartbeat with a new nat_port.
func (w *worker) change(i, port int) reply {
	n := w.node(i)
	if n == nil || !n.enrolled {
		return reply{Err: fmt.Sprintf("node %d is not an enrolled node of this worker", i)}
	}
	sent, err := n.register("", port, &n.hc)
	w.stats.count(opHeartbeat, err)
	r := reply{Sent: sent}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// arrivals are how long after sent each node but the changed one got the
// watched change.
func (w *worker) arrivals(changed int, sent int64) reply {
	var r reply
	for _, n := range w.nodes {
		if t := n.arrived.Load(); t != 0 && n.i != changed {
			r.Delays = append(r.Delays, t-sent)
		}
	}
	return r
}

func (w *worker) node(i int) *node {
	if len(w.nodes) == 0 || i < w.nodes[0].i || i > w.nodes[len(w.nodes)-1].i {
		return nil
	}
	return w.nodes[i-w.nodes[0].i]
}

// gate holds the nodes' requests while the server restarts, and lets them
// all go at once.
type gate struct {
	mu     sync.Mutex
	closed bool
	opened chan struct{} // closed when the gate next opens
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.opened)
		g.opened = make(chan struct{})
	}
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// pass waits while the gate is closed.
func (g *gate) pass() {
	g.mu.Lock()
	closed, opened := g.closed, g.opened
	g.mu.Unlock()
	if closed {
		<-opened
	}
}

// sleep waits d, or until the gate opens after having been closed.
func (g *gate) sleep(d time.Duration) {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-opened:
	}
}

// runWorker is a worker process's main: it answers the coordinator's
// requests until stdin ends.
func runWorker() error {
	// The heap is mostly connections' buffers, live for the whole run:
	// collecting earlier keeps the process near their size, for little
	// CPU (they hold no pointers).
	debug.SetGCPercent(50)
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	enc := json.NewEncoder(os.Stdout)
	var cfg workerConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("reading the worker's config: %w", err)
	}
	w, err := newWorker(cfg)
	if err != nil {
		enc.Encode(reply{Err: err.Error()})
		return err
	}
	if err := enc.Encode(reply{}); err != nil {
		return err
	}
	for {
		var req request
		if err := dec.Decode(&req); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := enc.Encode(w.handle(req)); err != nil {
			return err
		}
	}
}
