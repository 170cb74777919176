package node

import (
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// After a burst of traffic, the userspace engine's pools hold a 64 KiB
// buffer for each packet that was in flight at the peak: a hundred MiB
// or more, which the Go runtime keeps, and the system counts as the
// daemon's, until a garbage collection that an idle daemon may not run
// for minutes, and then hands back to the system slowly. trimMemory
// watches the tunnel's traffic, and once a burst is over, collects twice
// (a sync.Pool lets go of its buffers over two collections) and returns
// what is free to the system at once.

const (
	// trimEvery is how often trimMemory looks at the traffic.
	trimEvery = 10 * time.Second
	// burstBytes, received and sent in one look's time, make a burst:
	// some 50 Mbit/s.
	burstBytes = 64 << 20
	// idleBytes or fewer in one look's time say a burst is over.
	idleBytes = 1 << 20
)

func (d *Daemon) trimMemory(ctx context.Context) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	var w burstWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		peers, err := d.engine.Peers()
		if err != nil {
			continue
		}
		var total int64
		for _, p := range peers {
			total += p.RxBytes + p.TxBytes
		}
		if w.over(total) {
			start := time.Now()
			released := trim()
			d.log.Debug("traffic burst over: memory returned to the system", "MiB", released>>20, "took", time.Since(start))
		}
	}
}

// burstWatch tells, from the tunnel's byte count looked at every
// trimEvery, when a burst of traffic is over.
type burstWatch struct {
	last  int64
	burst bool
}

// over takes the byte count now and says whether a burst just ended. A
// count lower than the last (peers gone, or the engine restarted) starts
// over from it.
func (w *burstWatch) over(total int64) bool {
	moved := total - w.last
	w.last = total
	switch {
	case moved < 0:
		return false
	case moved >= burstBytes:
		w.burst = true
	case w.burst && moved <= idleBytes:
		w.burst = false
		return true
	}
	return false
}

// trim collects garbage twice and returns the free heap to the system; it
// says how many bytes that returned.
func trim() uint64 {
	before := heapReleased()
	runtime.GC()
	debug.FreeOSMemory()
	return max(heapReleased(), before) - before
}

// heapReleased is the heap memory the runtime has returned to the system
// and not taken back.
func heapReleased() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
