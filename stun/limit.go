package stun

import (
	"cmp"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds a token bucket per source IP, at most max of them.
type limiters struct {
	limit rate.Limit
	burst int
	max   int
	idle  time.Duration // unseen this long, a bucket is full again
	m     map[netip.Addr]*source
	swept time.Time
}

type source struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(opts Options) *limiters {
	l := &limiters{
		limit: cmp.Or(opts.Rate, DefaultRate),
		burst: cmp.Or(opts.Burst, DefaultBurst),
		max:   max(cmp.Or(opts.MaxSources, DefaultMaxSources), 1),
		m:     make(map[netip.Addr]*source),
	}
	l.idle = refill(l.limit, l.burst)
	return l
}

// refill is how long a bucket takes to fill from empty, between a second
// and an hour.
func refill(r rate.Limit, burst int) time.Duration {
	secs := float64(burst) / float64(r)
	return time.Duration(min(max(secs, 1), 3600) * float64(time.Second))
}

// allow reports whether ip may be answered at time now.
func (l *limiters) allow(ip netip.Addr, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	l.sweep(now)
	src := l.m[ip]
	if src == nil {
		l.makeRoom()
		src = &source{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[ip] = src
	}
	src.seen = now
	return src.lim.AllowN(now, 1)
}

// sweep forgets the sources idle long enough for their bucket to be full
// again, where a new limiter would behave the same. It runs at most once per
// l.idle, so its cost is spread thin.
func (l *limiters) sweep(now time.Time) {
	if now.Sub(l.swept) < l.idle {
		return
	}
	l.swept = now
	for ip, src := range l.m {
		if now.Sub(src.seen) >= l.idle {
			delete(l.m, ip)
		}
	}
}

// makeRoom evicts arbitrary sources until there is room for one more. Under
// a flood from many (spoofed) sources an evicted one starts again with a
// full bucket, so the limit weakens, but memory stays bounded and no reply
// is ever larger than its request.
func (l *limiters) makeRoom() {
	for ip := range l.m {
		if len(l.m) < l.max {
			return
		}
		delete(l.m, ip)
	}
}
