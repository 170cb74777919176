package node

import (
	"runtime"
	"testing"
)

// TestBurstWatch: a burst ends at the first quiet look after it, once;
// quiet without a burst, steady traffic below a burst, and a count that
// went back are not the end of one.
func TestBurstWatch(t *testing.T) {
	const mib = 1 << 20
	var w burstWatch
	for i, step := range []struct {
		total int64
		over  bool
	}{
		{0, false},
		{10 * mib, false},                   // light traffic
		{10*mib + 100, false},               // quiet, but no burst before
		{10*mib + burstBytes, false},        // a burst
		{20*mib + 2*burstBytes, false},      // going on
		{20*mib + 2*burstBytes + 10, true},  // over
		{20*mib + 2*burstBytes + 20, false}, // still quiet: already trimmed
		{3 * burstBytes, false},             // another burst
		{mib, false},                        // the count went back (engine restarted)
		{mib + 10, false},                   // quiet, but the burst's end was not seen
	} {
		if got := w.over(step.total); got != step.over {
			t.Errorf("step %d (total %d): over = %v, want %v", i, step.total, got, step.over)
		}
	}
}

// TestTrimReleases: memory freed by a burst, held by the runtime, goes
// back to the system.
func TestTrimReleases(t *testing.T) {
	const size = 64 << 20
	garbage := make([][]byte, 0, size>>16)
	for range size >> 16 {
		garbage = append(garbage, make([]byte, 1<<16))
	}
	for _, g := range garbage {
		g[0] = 1 // touched, so that the system backs it
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	if released := trim(); released < size/2 {
		t.Errorf("trim returned %d MiB to the system after %d MiB were freed", released>>20, size>>20)
	}
}
