//go:build linux

package main

import (
	"time"

	"github.com/wire-mesh/wire/lab"
)

// cpuTimes sums the CPU time of processes.
func cpuTimes(pids ...int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		t, err := lab.CPUTime(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}
