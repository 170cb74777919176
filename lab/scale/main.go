//go:build linux

// Command scale measures how wire's coordination server holds up under
// many nodes: N simulated nodes (by default 1,000, 5,000 and 10,000),
// each with its own ed25519 identity and its own TLS connections with a
// client certificate and the pinned server key, talk the real HTTP API to
// one real `wire server` process built from this tree. Per N it prints a
// table: the enrolment rate (one reusable join key) and its errors; the
// time until every node holds the full map, after enrolment and after a
// server restart with every node reconnecting at once, and the requests
// that failed meanwhile; the server's CPU (as % of one core) and memory
// (VmRSS, VmHWM) in a steady state of heartbeats every 30 s and idle
// long-polls; and the propagation of one node's change to all others
// (p50, p99, max, and how many did not get it within 10 s). The server
// is pinned to one CPU and the simulator to another, whose own CPU use
// is printed too: it must not be the bottleneck.
//
//	just bench-scale [-n 1000,5000] [-duration 60s]
//	go run ./lab/scale [-n 1000,5000,10000] [-duration 60s] [-rounds 5] [-kill]
//
// It needs Linux and two CPUs, not root. Everything runs on loopback:
// the server on 127.0.0.1, the nodes from 127.1.x.y (one address each,
// so that the server's per-address limits see many hosts). Processes and
// temporary files it started are gone when it ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/internal/pgtest"
)

func main() {
	worker := flag.Bool("worker", false, "run as one of the simulator's processes (the benchmark starts them)")
	ns := flag.String("n", "1000,5000,10000", "numbers of nodes to measure, comma-separated")
	duration := flag.Duration("duration", time.Minute, "length of the steady phase")
	rounds := flag.Int("rounds", 5, "propagation rounds per N")
	conc := flag.Int("enrol-concurrency", 32, "enrolments under way at once")
	kill := flag.Bool("kill", false, "cold start after SIGKILL (a crash) rather than SIGTERM")
	syncLimit := flag.Duration("sync-limit", 6*time.Minute, "how long to wait for all nodes to hold the full map")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	perWorker := flag.Int("per-process", 2500, "nodes per simulator process (each holds 2 connections per node)")
	keep := flag.Bool("keep", false, "keep the temporary dir: the binary, each N's state dir and server log")
	store := flag.String("store", "sqlite", "the server's store: sqlite, or postgres (a throwaway cluster of Debian's postgresql, pinned to the server's CPU)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./lab/scale [-n 1000,5000,10000] [-duration 60s] [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *worker {
		if err := runWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "scale worker:", err)
			os.Exit(1)
		}
		return
	}
	o := options{duration: *duration, rounds: *rounds, enrolConc: *conc, kill: *kill, syncLimit: *syncLimit,
		timeout: *timeout, perWorker: *perWorker, keep: *keep, store: *store}
	var err error
	if o.ns, err = parseNs(*ns); err != nil || flag.NArg() > 0 || o.duration < time.Second || o.rounds < 1 || o.rounds > 50 ||
		o.enrolConc < 1 || o.perWorker < 1 || o.syncLimit < time.Second || o.timeout < time.Minute || (o.store != "sqlite" && o.store != "postgres") {
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(o))
}

// options are the command's flags.
type options struct {
	ns        []int
	duration  time.Duration
	rounds    int
	enrolConc int
	kill      bool
	syncLimit time.Duration
	timeout   time.Duration
	perWorker int
	keep      bool
	store     string // sqlite or postgres
}

// maxNodes is what srcAddr and the 10.99.0.0/16 VPN subnet allow.
const maxNodes = 60000

func parseNs(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > maxNodes {
			return nil, fmt.Errorf("-n %q: want numbers of nodes from 2 to %d, comma-separated", s, maxNodes)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// env is what every N shares: the binary, the CPUs, the machine.
type env struct {
	tmp               string
	wire              string
	serverCPU, simCPU int
	fileLimit         uint64
	host              host
	pg                *pgtest.Cluster // with -store postgres
}

func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	e, err := setup(o)
	if e != nil && !o.keep {
		defer os.RemoveAll(e.tmp)
	}
	if e != nil && e.pg != nil {
		defer e.pg.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		return 1
	}
	fmt.Print(e.host)
	fmt.Printf("pinning   server to CPU %d, simulator to CPU %d; open-file limit %d for both\n", e.serverCPU, e.simCPU, e.fileLimit)
	if e.pg != nil {
		fmt.Printf("store     %s, on the server's CPU\n", e.pg.Version())
	}
	var results []*result
	code := 0
	for _, n := range o.ns {
		r := measure(ctx, o, e, n)
		printResult(os.Stdout, r)
		results = append(results, r)
		if r.err != nil {
			code = 1
		}
		if ctx.Err() != nil {
			break
		}
	}
	printSummary(os.Stdout, e, o, results)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Printf("\nthe run hit its -timeout of %v\n", o.timeout)
	}
	return code
}

// setup builds wire, raises the open-file limit, and pins this process
// (and so the simulator's processes it starts) to the simulator's CPU.
func setup(o options) (*env, error) {
	tmp, err := os.MkdirTemp("", "wire-scale")
	if err != nil {
		return nil, err
	}
	e := &env{tmp: tmp, host: describeHost()}
	logf("building wire")
	if e.wire, e.host.tree, err = buildWire(tmp); err != nil {
		return e, err
	}
	if e.serverCPU, e.simCPU, err = twoCPUs(); err != nil {
		return e, err
	}
	// The server holds two connections per node, and so does the
	// simulator, spread over processes of perWorker nodes.
	want := uint64(2*slicesMax(o.ns) + 1024)
	if e.fileLimit, err = raiseFileLimit(want); err != nil {
		return e, fmt.Errorf("raising the open-file limit: %w", err)
	}
	if need := uint64(2*o.perWorker + 256); need > e.fileLimit {
		return e, fmt.Errorf("-per-process %d needs an open-file limit of %d, and this one is %d: use a smaller -per-process", o.perWorker, need, e.fileLimit)
	}
	if o.store == "postgres" {
		// PostgreSQL is the server's side of the benchmark: its CPU.
		wrap := []string{"taskset", "-c", strconv.Itoa(e.serverCPU)}
		if _, err := exec.LookPath("taskset"); err != nil {
			return e, errors.New("-store postgres pins PostgreSQL with taskset (Debian package util-linux)")
		}
		logf("starting PostgreSQL")
		if e.pg, err = pgtest.Launch(wrap...); err != nil {
			return e, err
		}
	}
	if want > e.fileLimit {
		logf("open-file limit %d (hard; raising it needs CAP_SYS_RESOURCE): the server's MaxConns is %d, below the %d connections of %d nodes",
			e.fileLimit, e.fileLimit-serverFDReserve, 2*slicesMax(o.ns), slicesMax(o.ns))
	}
	return e, pinSelf(e.simCPU)
}

func slicesMax(ns []int) int {
	m := 0
	for _, n := range ns {
		m = max(m, n)
	}
	return m
}

// host is the machine the benchmark ran on.
type host struct {
	date      time.Time
	kernel    string
	cpu       string
	nproc     int
	goVersion string
	load      string
	tree      string // the commit wire was built from
}

func describeHost() host {
	h := host{date: time.Now(), nproc: runtime.NumCPU(), cpu: cpuModel(), goVersion: runtime.Version(), load: loadAverage()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.kernel = unix.ByteSliceToString(u.Release[:])
	}
	return h
}

// cpuModel is the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// String is the header of the output.
func (h host) String() string {
	return fmt.Sprintf("wire scale benchmark\ndate      %s\nwire      %s (git describe)\nmachine   %d CPUs (nproc) × %s, Linux %s, %s\nload      %s (1, 5, 15 min, at the start)\n",
		h.date.UTC().Format("2006-01-02 15:04 MST"), h.tree, h.nproc, h.cpu, h.kernel, h.goVersion, h.load)
}

func (h host) short() string {
	return fmt.Sprintf("wire %s; %d × %s, Linux %s, %s", h.tree, h.nproc, h.cpu, h.kernel, h.goVersion)
}
