//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// The phases of one N's measurement, in the order they run.

// enrol enrols every node with the reusable key, enrolConc at a time in
// all; nodes do not poll yet.
func (b *nbench) enrol(ctx context.Context) error {
	conc := max(b.o.enrolConc/len(b.ws), 1)
	b.res.enrolConc = conc * len(b.ws)
	start := mono()
	reps, err := callAll(ctx, b.ws, enrolLimit, same(request{Op: "enrol", Concurrency: conc}))
	var done int64
	for _, r := range reps {
		b.res.enrolled += r.Enrolled
		done = max(done, r.Done)
	}
	b.res.enrolTook = time.Duration(done - start)
	b.enrolDone = done
	s, serr := b.snap(ctx)
	b.res.enrolCounts = s.counts
	if err == nil && b.res.enrolled == 0 {
		err = fmt.Errorf("no node enrolled (%v)", b.res.samples)
	}
	if err == nil {
		err = serr
	}
	return err
}

// initialSync has every enrolled node poll since=0 at once, and waits
// until each holds the whole map.
func (b *nbench) initialSync(ctx context.Context) error {
	s0, err := b.snap(ctx)
	if err != nil {
		return err
	}
	t0 := mono()
	if _, err := callAll(ctx, b.ws, callWait, same(request{Op: "poll", Target: b.res.enrolled})); err != nil {
		return err
	}
	b.res.initial, err = b.waitSynced(ctx, "initial sync", t0, s0)
	return err
}

// waitSynced waits until every enrolled node holds the whole map, or
// syncLimit after t0.
func (b *nbench) waitSynced(ctx context.Context, what string, t0 int64, s0 snapshot) (syncResult, error) {
	next := t0 + int64(progress)
	n0 := readNetstat()
	for {
		s, err := b.snap(ctx)
		if err != nil {
			return syncResult{}, err
		}
		done := s.synced >= b.res.enrolled
		if done || s.at-t0 > int64(b.o.syncLimit) {
			r := syncResult{
				ran: true, took: time.Duration(s.at - t0), synced: s.synced, complete: done,
				counts: s.counts.sub(s0.counts), serverCPU: s.serverCPU - s0.serverCPU, simCPU: s.simCPU - s0.simCPU,
				wall: time.Duration(s.at - s0.at),
			}
			if done {
				r.took = time.Duration(s.syncedMax - t0)
			}
			r.serverMem, _ = lab.ReadMemory(b.srv.pid)
			r.overflows = readNetstat().sub(n0)
			r.half, r.p90, err = b.syncQuantiles(ctx, t0)
			return r, err
		}
		if s.at > next {
			d := s.counts.sub(s0.counts)
			logf("N=%d: %s: %d of %d hold the whole map after %v; %d requests failed",
				b.n, what, s.synced, b.res.enrolled, time.Duration(s.at-t0).Round(time.Second), d.failed(opPoll, opHeartbeat))
			next += int64(progress)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return syncResult{}, err
		}
	}
}

// syncQuantiles are the times after t0 by which half and 90% of the
// enrolled nodes held the whole map (0: they did not).
func (b *nbench) syncQuantiles(ctx context.Context, t0 int64) (half, p90 time.Duration, err error) {
	reps, err := callAll(ctx, b.ws, callWait, same(request{Op: "syncs", Sent: t0}))
	var ds []time.Duration
	for _, r := range reps {
		for _, d := range r.Delays {
			ds = append(ds, time.Duration(d))
		}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(b.res.enrolled))) - 1
		if i < 0 || i >= len(ds) {
			return 0
		}
		return ds[i]
	}
	return at(0.5), at(0.9), err
}

// settle is how long after the enrolment the steady phase begins: every
// node has sent its first heartbeat by then (the server closes a node's
// enrolment connection after 10 s idle, so the first one dials anew).
const settle = heartbeatEvery + 10*time.Second

// steady measures the server while nodes only heartbeat and long-poll.
func (b *nbench) steady(ctx context.Context) error {
	if wait := time.Duration(b.enrolDone + int64(settle) - mono()); wait > 0 {
		logf("N=%d: waiting %v for every node's first heartbeat", b.n, wait.Round(time.Second))
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	s0, err := b.snap(ctx)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, b.o.duration); err != nil {
		return err
	}
	s1, err := b.snap(ctx)
	if err != nil {
		return err
	}
	mem, err := lab.ReadMemory(b.srv.pid)
	b.res.steady = steadyResult{
		ran: true, wall: time.Duration(s1.at - s0.at), serverCPU: s1.serverCPU - s0.serverCPU, simCPU: s1.simCPU - s0.simCPU,
		storeCPU:  s1.storeCPU - s0.storeCPU,
		serverMem: mem, fds: openFiles(b.srv.pid), counts: s1.counts.sub(s0.counts),
	}
	return err
}

// propagate has one node after another change its nat_port (a heartbeat
// with a new one, as after a NAT rebinding) and measures when each other
// node's long-poll delivers it.
func (b *nbench) propagate(ctx context.Context) error {
	for r := range b.o.rounds {
		node := (r*b.n/b.o.rounds + r*7) % b.n // spread over the workers
		rd, err := b.round(ctx, node, 40001+r)
		if err != nil {
			return err
		}
		b.res.rounds = append(b.res.rounds, rd)
		if err := sleepCtx(ctx, roundGap); err != nil {
			return err
		}
	}
	return nil
}

func (b *nbench) round(ctx context.Context, node, port int) (round, error) {
	rd := round{node: node, receivers: b.res.enrolled - 1}
	if _, err := callAll(ctx, b.ws, callWait, same(request{Op: "watch", Node: node, Port: port})); err != nil {
		return rd, err
	}
	w := b.ws[node/b.o.perWorker]
	if err := w.send(request{Op: "change", Node: node, Port: port}); err != nil {
		return rd, err
	}
	rep, err := w.recv(ctx, callWait)
	if err != nil {
		rd.err = err.Error() // the heartbeat failed: nothing to propagate
		return rd, nil
	}
	for mono() < rep.Sent+int64(propWindow) {
		s, err := b.snap(ctx)
		if err != nil {
			return rd, err
		}
		if s.arrived >= b.res.enrolled {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return rd, err
		}
	}
	reps, err := callAll(ctx, b.ws, callWait, same(request{Op: "arrivals", Node: node, Sent: rep.Sent}))
	for _, r := range reps {
		for _, d := range r.Delays {
			rd.delays = append(rd.delays, time.Duration(d))
		}
	}
	return rd, err
}

// coldStart stops the server (SIGTERM, or SIGKILL with -kill) while the
// nodes are held at their gates, starts it again on the same port, and
// lets every node reconnect at once; it waits until each holds the whole
// map again, as the new server's first answer to it says (the changes
// since the node's version from the old run, or the whole map).
func (b *nbench) coldStart(ctx context.Context) error {
	if _, err := callAll(ctx, b.ws, callWait, same(request{Op: "pause"})); err != nil {
		return err
	}
	sig, name := syscall.SIGTERM, "SIGTERM"
	if b.o.kill {
		sig, name = syscall.SIGKILL, "SIGKILL"
	}
	b.res.coldSignal = name
	t := mono()
	b.res.coldStopErr = b.srv.stop(sig, 30*time.Second)
	b.res.coldStop = time.Duration(mono() - t)
	if err := b.quiet(ctx); err != nil {
		return err
	}
	state := filepath.Join(b.dir, "state")
	logw, err := os.OpenFile(filepath.Join(b.dir, "server.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer logw.Close()
	t = mono()
	if b.srv, err = startServer(b.env.wire, state, b.store, b.srv.addr, b.env.serverCPU, logw); err != nil {
		return err
	}
	b.res.coldStart = time.Duration(mono() - t)
	s0, err := b.snap(ctx)
	if err != nil {
		return err
	}
	t0 := mono()
	if _, err := callAll(ctx, b.ws, callWait, same(request{Op: "resume"})); err != nil {
		return err
	}
	b.res.cold, err = b.waitSynced(ctx, "cold start", t0, s0)
	return err
}

// quiet waits until no node has a request under way (they fail fast
// once the server is gone).
func (b *nbench) quiet(ctx context.Context) error {
	deadline := mono() + int64(quietWait)
	for {
		s, err := b.status(ctx)
		if err != nil || s.inflight == 0 {
			return err
		}
		if mono() > deadline {
			return fmt.Errorf("%d requests still under way %v after the server stopped", s.inflight, quietWait)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
