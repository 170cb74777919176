package agent

import (
	"time"

	"golang.org/x/time/rate"
)

// Per-sender limits on events: a steady rate with room for a burst.
const (
	eventsPerSecond = 50
	eventBurst      = 200
)

type limiter struct{ *rate.Limiter }

func (l limiter) allow(now time.Time) bool { return l.AllowN(now, 1) }

// limiter returns the sender's limiter.
func (a *Agent) limiter(nodeID string) limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limits[nodeID]
	if !ok {
		l = &limiter{rate.NewLimiter(eventsPerSecond, eventBurst)}
		a.limits[nodeID] = l
	}
	return *l
}
