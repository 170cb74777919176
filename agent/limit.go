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

// allow spends one of the sender's events, if it has one left.
func (a *Agent) allow(nodeID string, now time.Time) bool {
	a.mu.Lock()
	l, ok := a.limits[nodeID]
	if !ok {
		l = rate.NewLimiter(eventsPerSecond, eventBurst)
		a.limits[nodeID] = l
	}
	a.mu.Unlock()
	return l.AllowN(now, 1)
}
