//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/lab"
)

// cpuTimes sums the CPU time of processes; one that is gone counts 0.
func cpuTimes(pids ...int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		t, _ := lab.CPUTime(pid)
		sum += t
	}
	return sum
}

// openFiles counts a process's open file descriptors.
func openFiles(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// cpusAllowed says which CPUs the threads of a process may run on: the
// Cpus_allowed_list of each, and how many threads there are. Threads that
// disagree are listed apart ("1 (12 threads), 0-1 (1 thread)").
func cpusAllowed(pid int) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	count := map[string]int{}
	var order []string
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t))
		if err != nil {
			continue
		}
		var list string
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				list = strings.TrimSpace(v)
			}
		}
		if count[list] == 0 {
			order = append(order, list)
		}
		count[list]++
	}
	var parts []string
	for _, l := range order {
		parts = append(parts, fmt.Sprintf("CPU %s (%d threads)", l, count[l]))
	}
	return strings.Join(parts, ", ")
}

// twoCPUs returns two CPUs this process may run on: one for the server,
// one for the simulator.
func twoCPUs() (server, sim int, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return 0, 0, fmt.Errorf("this process may use %d CPU: the benchmark pins the server to one and the simulator to another", len(cpus))
	}
	return cpus[0], cpus[1], nil
}

// pinSelf pins every thread of this process to cpu. Threads made later
// inherit the mask of the thread that makes them, so after a pass in
// which every thread was already pinned, all are.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if unix.SchedGetaffinity(tid, &cur) == nil && cur == set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("threads of this process kept appearing unpinned")
}

// startPinned starts cmd on cpu alone. The child inherits the affinity of
// the thread that forks it: this goroutine's thread, pinned to cpu for
// the fork and then given its mask back.
func startPinned(cmd *exec.Cmd, cpu int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity: %w", err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// raiseFileLimit raises this process's open-file limit, which its
// children inherit, to want if it may, else as far as the hard limit
// goes; it returns the limit now. (Calling Setrlimit also stops Go from
// giving children the original soft limit back.)
func raiseFileLimit(want uint64) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if want > lim.Max {
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: want}) == nil {
			return want, nil
		}
	}
	lim.Cur = lim.Max
	return lim.Max, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
}

// mono is CLOCK_MONOTONIC in nanoseconds: the same clock in every process
// of the benchmark, so that times taken in the simulator's processes can
// be compared.
func mono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// fileLimitOf is a process's soft open-file limit, from /proc/PID/limits.
func fileLimitOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// netstat are the kernel's counters of TCP connections that a listener's
// queues could not take, in this network namespace (all of its
// listeners: on a shared machine, others' too).
type netstat struct {
	listenOverflows, listenDrops, synRetrans uint64
}

func (n netstat) sub(o netstat) netstat {
	return netstat{n.listenOverflows - o.listenOverflows, n.listenDrops - o.listenDrops, n.synRetrans - o.synRetrans}
}

// readNetstat reads the TcpExt counters of /proc/net/netstat.
func readNetstat() netstat {
	var n netstat
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return n
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != "TcpExt:" || len(values) != len(keys) {
			continue
		}
		for j, k := range keys {
			v, _ := strconv.ParseUint(values[j], 10, 64)
			switch k {
			case "ListenOverflows":
				n.listenOverflows = v
			case "ListenDrops":
				n.listenDrops = v
			case "TCPSynRetrans":
				n.synRetrans = v
			}
		}
	}
	return n
}
