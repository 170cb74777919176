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
	now   func() time.Time
	mu    sync.Mutex
	m     map[[2]string]*punchCount
	swept time.Time // when forgotten pairs were last removed
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
	p.sweep(now)
	c, ok := p.m[[2]string{from, to}]
	if ok && now.Sub(c.last) > punchForget {
		ok = false // forgotten, but not swept yet
	}
	if !ok {
		c = &punchCount{}
		p.m[[2]string{from, to}] = c
	}
	c.attempts++
	c.last = now
	return api.PunchResponse{OK: true, UseRelay: c.attempts >= RelayAfter, Attempts: c.attempts}
}

// sweep removes the pairs not heard of for punchForget, at most once per
// punchForget/10, so that an attempt costs O(1) in the mesh's size, not a
// scan of every pair remembered. p.mu is held.
func (p *punches) sweep(now time.Time) {
	if now.Sub(p.swept) < punchForget/10 {
		return
	}
	p.swept = now
	for k, c := range p.m {
		if now.Sub(c.last) > punchForget {
			delete(p.m, k)
		}
	}
}
