package node

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is a capped exponential backoff with jitter: nodes that failed
// together, as all do when their server restarts, come back spread over
// the wait rather than all at once.
type backoff struct {
	first, cap time.Duration
	next       time.Duration // zero: first
}

// wait sleeps for the next wait, a random time in its upper half, and
// doubles the one after up to cap; it returns what it slept.
func (b *backoff) wait(ctx context.Context) time.Duration {
	b.next = max(b.next, b.first)
	d := jitter(b.next)
	sleep(ctx, d)
	b.next = min(2*b.next, max(b.cap, b.next))
	return d
}

// atLeast makes the next wait at least d (a server's Retry-After is a
// floor): its step at least 2d, since a wait is drawn from the upper half
// of its step.
func (b *backoff) atLeast(d time.Duration) { b.next = max(b.next, 2*d) }

// reset starts again from first, after a success.
func (b *backoff) reset() { b.next = 0 }

// jitter is a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
