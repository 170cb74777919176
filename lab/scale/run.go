//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// serverFDReserve is what wire server keeps of its open-file limit for
// other than HTTP connections (server/conns.go, fdReserve).
const serverFDReserve = 128

// Bounds of the phases.
const (
	enrolLimit = 10 * time.Minute
	callWait   = time.Minute // for a simulator process's answer
	quietWait  = 30 * time.Second
	propWindow = 10 * time.Second // a change not delivered in this counts as missed
	roundGap   = 2 * time.Second
	progress   = 15 * time.Second
)

// result is what one N measured.
type result struct {
	n, workers, enrolConc int
	fileLimit             int // the server's RLIMIT_NOFILE
	enrolled              int
	enrolTook             time.Duration
	enrolCounts           counts
	initial               syncResult
	steady                steadyResult
	rounds                []round
	cold                  syncResult
	coldSignal            string
	coldStop              time.Duration // from the signal to the server's exit
	coldStart             time.Duration // from starting the new server to its banner
	coldStopErr           error
	simMem                lab.Memory // all simulator processes, at the end
	serverLog             logSummary
	codes                 map[int]uint64
	samples               map[string]string
	serverPinned          string
	simPinned             string
	err                   error // why the measurement stopped early
}

// syncResult is a phase that ends when every node holds the whole map.
type syncResult struct {
	ran       bool
	took      time.Duration // until the last node held it; the limit if some never did
	synced    int           // nodes that held it
	complete  bool
	counts    counts // requests during the phase
	serverCPU time.Duration
	simCPU    time.Duration
	wall      time.Duration
	serverMem lab.Memory    // at the end of the phase
	half, p90 time.Duration // when half and 90% of the nodes held it
	overflows netstat       // the kernel's listen queue counters over the phase
}

// steadyResult is the phase of heartbeats and idle long-polls.
type steadyResult struct {
	ran       bool
	wall      time.Duration
	serverCPU time.Duration
	storeCPU  time.Duration // PostgreSQL's, with -store postgres
	simCPU    time.Duration
	serverMem lab.Memory
	fds       int // the server's open files
	counts    counts
}

// round is one propagation measurement.
type round struct {
	node      int
	delays    []time.Duration // of the nodes that got it, in any time
	receivers int
	err       string
}

// nbench is the measurement of one N: a fresh server, state and nodes.
type nbench struct {
	o     options
	env   *env
	n     int
	dir   string
	srv   *serverProc
	store string // the PostgreSQL database's URL, or "" for SQLite
	ws    []*workerProc
	res   *result

	enrolDone int64 // mono
}

// measure runs every phase for n nodes. It returns what it measured even
// when a phase failed (res.err says which), and leaves no process or
// file behind.
func measure(ctx context.Context, o options, e *env, n int) *result {
	b := &nbench{o: o, env: e, n: n, res: &result{n: n}}
	b.res.err = b.run(ctx)
	return b.res
}

func (b *nbench) run(ctx context.Context) (err error) {
	if b.dir, err = os.MkdirTemp(b.env.tmp, fmt.Sprintf("n%d-", b.n)); err != nil {
		return err
	}
	defer b.cleanup()
	if err := b.start(); err != nil {
		return err
	}
	for _, phase := range []struct {
		name string
		f    func(context.Context) error
	}{
		{"enrolment", b.enrol}, {"initial sync", b.initialSync}, {"steady state", b.steady},
		{"propagation", b.propagate}, {"cold start", b.coldStart},
	} {
		logf("N=%d: %s", b.n, phase.name)
		if err := phase.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", phase.name, err)
		}
	}
	return nil
}

// start runs the server, makes the join key and starts the simulator's
// processes, each with its share of the nodes.
func (b *nbench) start() error {
	state := filepath.Join(b.dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	logw, err := os.Create(filepath.Join(b.dir, "server.log"))
	if err != nil {
		return err
	}
	defer logw.Close() // the server has its own copy
	if b.env.pg != nil {
		if b.store, err = b.env.pg.CreateDB(); err != nil {
			return err
		}
	}
	if b.srv, err = startServer(b.env.wire, state, b.store, "127.0.0.1:0", b.env.serverCPU, logw); err != nil {
		return err
	}
	key, err := createKey(b.env.wire, state, b.store)
	if err != nil {
		return err
	}
	per := b.o.perWorker
	for lo := 0; lo < b.n; lo += per {
		cfg := workerConfig{Server: b.srv.addr, JoinKey: key.String(), Lo: lo, Hi: min(lo+per, b.n), N: b.n}
		w, err := startWorker(cfg)
		if err != nil {
			return err
		}
		b.ws = append(b.ws, w)
	}
	b.res.workers = len(b.ws)
	b.res.fileLimit = fileLimitOf(b.srv.pid)
	b.res.serverPinned = cpusAllowed(b.srv.pid)
	b.res.simPinned = cpusAllowed(b.ws[0].pid)
	return nil
}

// cleanup ends the simulator's processes and the server, by their pids,
// and removes the state (unless -keep).
func (b *nbench) cleanup() {
	var mem lab.Memory
	for _, w := range b.ws {
		m, _ := lab.ReadMemory(w.pid)
		mem = mem.Add(m)
	}
	b.res.simMem = mem
	for _, w := range b.ws {
		w.close()
	}
	if b.srv != nil {
		b.srv.stop(syscall.SIGTERM, 10*time.Second)
	}
	b.res.serverLog = summarizeLog(filepath.Join(b.dir, "server.log"))
	if b.o.keep {
		logf("N=%d: kept %s", b.n, b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// snapshot is the simulator's state and the processes' CPU time at once.
type snapshot struct {
	at                int64 // mono
	synced, arrived   int
	syncedMax         int64
	inflight          int64
	counts            counts
	serverCPU, simCPU time.Duration
	storeCPU          time.Duration
}

// snap takes a snapshot while the server should be running: an error if
// it is not.
func (b *nbench) snap(ctx context.Context) (snapshot, error) {
	select {
	case <-b.srv.done:
		return snapshot{}, fmt.Errorf("wire server exited (%v); its log: %s", b.srv.err, filepath.Join(b.dir, "server.log"))
	default:
	}
	return b.status(ctx)
}

// status takes a snapshot.
func (b *nbench) status(ctx context.Context) (snapshot, error) {
	reps, err := callAll(ctx, b.ws, callWait, same(request{Op: "status"}))
	s := snapshot{at: mono(), serverCPU: cpuTimes(b.srv.pid), simCPU: b.simCPU()}
	if b.env.pg != nil {
		s.storeCPU = cpuTimes(b.env.pg.Pids()...)
	}
	if b.res.codes == nil {
		b.res.codes, b.res.samples = map[int]uint64{}, map[string]string{}
	}
	for _, r := range reps {
		s.synced += r.Synced
		s.arrived += r.Arrived
		s.syncedMax = max(s.syncedMax, r.SyncedMax)
		s.inflight += r.Inflight
		s.counts = s.counts.add(r.Counts)
		for k, v := range r.Samples {
			b.res.samples[k] = v
		}
	}
	clear(b.res.codes) // each worker's are totals: sum them afresh
	for _, r := range reps {
		for c, n := range r.Codes {
			b.res.codes[c] += n
		}
	}
	return s, err
}

// simCPU is the CPU time of the simulator: this process and the workers.
func (b *nbench) simCPU() time.Duration {
	pids := []int{os.Getpid()}
	for _, w := range b.ws {
		pids = append(pids, w.pid)
	}
	return cpuTimes(pids...)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s scale: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
