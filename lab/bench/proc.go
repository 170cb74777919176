//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// cpuTimes is the CPU time of each process.
func cpuTimes(pids ...int) ([]time.Duration, error) {
	each := make([]time.Duration, len(pids))
	for i, pid := range pids {
		t, err := lab.CPUTime(pid)
		if err != nil {
			return nil, err
		}
		each[i] = t
	}
	return each, nil
}

// record runs perf(1) on pids, with call graphs, into o.perf/NAME.data,
// if o asks for it and this is the first round; the function it returns
// stops it and waits for it to write the file.
func (o options) record(ctx context.Context, b *bench, round int, name string, pids ...int) (stop func()) {
	if o.perf == "" || round != 1 {
		return func() {}
	}
	list := make([]string, len(pids))
	for i, pid := range pids {
		list[i] = strconv.Itoa(pid)
	}
	out := filepath.Join(o.perf, name+".data")
	cmd := exec.CommandContext(ctx, "perf", "record", "--quiet", "-g", "-o", out, "-p", strings.Join(list, ","))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Errorf("perf record: %v", err)
		return func() {}
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		if st := cmd.ProcessState; st != nil {
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signal() == syscall.SIGINT {
				err = nil // how perf ends when it is asked to
			}
		}
		if err != nil && ctx.Err() == nil {
			b.Errorf("perf record %s: %v %s", name, err, strings.TrimSpace(stderr.String()))
			return
		}
		b.Logf("perf: %s (perf report -i %s --no-children)", out, out)
	}
}
