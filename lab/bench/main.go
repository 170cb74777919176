//go:build linux

// Command bench measures wire in the network lab, in one run: TCP
// throughput between two nodes behind two NAT routers over the wire
// tunnel, over the raw path, and over stock wireguard-go on the same
// path; the time from `wire up` to the first ping from a peer; how fast a
// new node reaches every existing node; and the daemon's memory. It
// prints one table. It needs root, iproute2, nftables, ping and iperf3.
//
//	go run ./lab/bench [-t SECONDS] [-rounds N] [-joins N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/lab"
)

func main() {
	secs := flag.Int("t", 5, "seconds of each iperf3 run")
	rounds := flag.Int("rounds", 3, "rounds of the three iperf3 runs; the table has the median")
	joins := flag.Int("joins", 3, "fresh nodes joined for each of join-to-ping and propagation")
	peers := flag.String("peers", "", "instead: one daemon with this many peers (comma-separated numbers), see peers.go")
	engines := flag.String("engines", "userspace", "with -peers: the engines to measure, comma-separated")
	changes := flag.Int("changes", 200, "with -peers: peer changes to measure the CPU of")
	perfDir := flag.String("perf", "", "record the first round's relayed transfers with perf(1) into this directory")
	beatURL := flag.String("beat", "", "(internal) send -changes heartbeats to this server, for -peers")
	beatFile := flag.String("beat-file", "", "(internal) the state.json of the nodes -beat moves")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./lab/bench [-t SECONDS] [-rounds N] [-joins N]   (as root)\n"+
			"       go run ./lab/bench -peers 1000,10000 [-engines userspace,kernel] [-changes N]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *beatURL != "" {
		if err := beat(*beatURL, *beatFile, *changes); err != nil {
			fmt.Fprintln(os.Stderr, "bench -beat:", err)
			os.Exit(1)
		}
		return
	}
	o := options{secs: *secs, rounds: *rounds, joins: *joins, changes: *changes, engines: strings.Split(*engines, ","), perf: *perfDir}
	for _, f := range strings.FieldsFunc(*peers, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 60000 {
			flag.Usage()
			os.Exit(2)
		}
		o.peers = append(o.peers, n)
	}
	if flag.NArg() > 0 || *secs < 1 || *secs > 120 || *rounds < 1 || *rounds > 9 || *joins < 1 || *joins > 9 || *changes < 1 || *changes > 10000 {
		flag.Usage()
		os.Exit(2)
	}
	if err := check(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.Exit(run(o))
}

// options are the command's flags.
type options struct {
	secs   int // of each iperf3 run
	rounds int // of the iperf3 runs
	joins  int // per join measurement
	// peers, if any, asks for the daemons with that many peers instead,
	// on each of engines, with changes peer changes each.
	peers   []int
	engines []string
	changes int
	perf    string // if set, the directory for perf(1) recordings
}

// check says what the bench lacks to run here.
func check(o options) error {
	if err := lab.Check(); err != nil {
		return fmt.Errorf("%v (apt-get install iproute2 nftables iputils-ping, and run as root)", err)
	}
	if len(o.peers) > 0 {
		return nil
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return errors.New("iperf3 is not installed: apt-get install iperf3")
	}
	return nil
}

// run measures and prints the table; it returns the exit code. Everything
// the lab started is gone when it returns, even after a failure.
func run(o options) (code int) {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer func() {
		r := recover()
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
		}
		b.close()
		if r != nil && r != errFatal {
			panic(r)
		}
		if b.Failed() {
			code = 1
		}
	}()
	h := buildAll(b)
	if len(o.peers) > 0 {
		printPeers(os.Stdout, h, measurePeers(ctx, b, h, o.peers, o.engines, o.changes))
		return 0
	}
	res := collect(ctx, b, h, o)
	res.took = time.Since(start)
	printTable(os.Stdout, h, o, res)
	return 0
}

// errFatal is the panic with which Fatalf unwinds to run.
var errFatal = errors.New("bench: fatal")

// bench is the lab.T of a run outside `go test`. Fatalf unwinds the
// goroutine that calls it to run's deferred cleanup, so only run's
// goroutine may call the lab's functions.
type bench struct {
	tmp string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

var _ lab.T = (*bench)(nil)

func newBench() (*bench, error) {
	tmp, err := os.MkdirTemp("", "wire-bench")
	if err != nil {
		return nil, err
	}
	return &bench{tmp: tmp}, nil
}

func (b *bench) Helper() {}

func (b *bench) Cleanup(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, f)
}

func (b *bench) Failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

func (b *bench) Errorf(format string, args ...any) {
	b.mu.Lock()
	b.failed = true
	b.mu.Unlock()
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (b *bench) Fatalf(format string, args ...any) {
	b.Errorf(format, args...)
	panic(errFatal)
}

func (b *bench) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (b *bench) TempDir() string {
	dir, err := os.MkdirTemp(b.tmp, "")
	if err != nil {
		b.Fatalf("%v", err)
	}
	return dir
}

// close runs the cleanups, the last registered first, then removes the
// temporary files.
func (b *bench) close() {
	for {
		b.mu.Lock()
		n := len(b.cleanups)
		if n == 0 {
			b.mu.Unlock()
			break
		}
		f := b.cleanups[n-1]
		b.cleanups = b.cleanups[:n-1]
		b.mu.Unlock()
		f()
	}
	os.RemoveAll(b.tmp)
}
