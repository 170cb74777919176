//go:build linux

package main

import (
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
