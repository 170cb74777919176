package stun

import (
	"net/netip"
	"sync"
	"time"
)

// Responder answers Binding requests that arrive on a socket carrying
// other traffic too (the relay's), as Server answers its own: the same
// minimal response, within the same limit per source IP. It is safe for
// concurrent use.
type Responder struct {
	mu  sync.Mutex
	lim *limiters
}

// NewResponder returns a Responder with opts' limits (Legacy and Logger
// are not used).
func NewResponder(opts Options) *Responder { return &Responder{lim: newLimiters(opts)} }

// Answer returns the response to req, a datagram from src at now, or nil
// if it gets none: it is not a valid Binding request, or src is over its
// limit.
func (r *Responder) Answer(req []byte, src netip.AddrPort, now time.Time) []byte {
	tx, fp, err := ParseBindingRequest(req)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	ok := r.lim.allow(src.Addr().Unmap(), now)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	return Response(tx, src, fp)
}
