package server

import (
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
)

// RelayAfter is how many failed direct attempts make a pair use the relay.
const RelayAfter = 3

// punchForget is how long a pair's attempts are remembered.
const punchForget = 10 * time.Minute

// punches counts failed direct attempts per ordered pair of nodes.
type punches struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[2]string]*punchCount
}

type punchCount struct {
	attempts int
	last     time.Time
}

func newPunches(now func() time.Time) *punches {
	return &punches{now: now, m: make(map[[2]string]*punchCount)}
}

func (p *punches) attempt(from, to string) api.PunchResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for k, c := range p.m {
		if now.Sub(c.last) > punchForget {
			delete(p.m, k)
		}
	}
	c, ok := p.m[[2]string{from, to}]
	if !ok {
		c = &punchCount{}
		p.m[[2]string{from, to}] = c
	}
	c.attempts++
	c.last = now
	return api.PunchResponse{OK: true, UseRelay: c.attempts >= RelayAfter, Attempts: c.attempts}
}
