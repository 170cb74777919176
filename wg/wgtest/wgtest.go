// Package wgtest is a fake wg.Engine for the tests of code that drives
// one, such as the node daemon: it records every Config it is given and
// reports whatever peers and STUN address the test sets.
package wgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/wire-mesh/wire/relay"
	"github.com/wire-mesh/wire/wg"
)

// Kind is what a fake Engine's Kind reports.
const Kind = "fake"

// Engine is a fake wg.Engine, safe for concurrent use. The zero value is
// not ready: use New.
type Engine struct {
	name string

	mu      sync.Mutex
	steps   []step        // every Set and Patch
	made    []wg.Config   // the Config of each step, made when asked for
	changed chan struct{} // closed and replaced at each Set and Patch
	setErr  error
	peers   []wg.PeerStatus
	mapped  netip.AddrPort
	stunErr error
	queried []netip.AddrPort
	port    int
	closed  bool
	blocked map[netip.AddrPort]bool
	noProbe bool
	relay   *relay.Conn
	hold    chan struct{} // the next Set waits, see HoldNextSet
	kernel  bool          // no Discover after the first Set, see LikeKernel
	bound   bool
}

var _ wg.Engine = (*Engine)(nil)

// New returns a fake engine for the interface name, listening (it says)
// on port 51820, with no peers, whose Discover waits for its context until
// SetDiscover says otherwise.
func New(name string) *Engine {
	return &Engine{name: name, port: 51820, changed: make(chan struct{})}
}

// Set records a copy of cfg, or fails with the error given to FailSet.
// A nonzero ListenPort becomes the port.
func (e *Engine) Set(cfg wg.Config) error {
	cfg = clone(cfg)
	return e.record(step{cfg: &cfg})
}

// Patch records p, or fails as Set does; the Config it makes is what
// Configs, Last and Wait report. It fails before the first Set, as a real
// engine's does.
func (e *Engine) Patch(p wg.Patch) error {
	p.Peers = slices.Clone(p.Peers)
	p.Remove = slices.Clone(p.Remove)
	return e.record(step{patch: &p})
}

// step is one Set or Patch.
type step struct {
	cfg   *wg.Config
	patch *wg.Patch
}

func (e *Engine) record(st step) error {
	e.mu.Lock()
	if h := e.hold; h != nil {
		e.hold = nil
		changed := e.changed
		e.mu.Unlock()
		close(h)
		select { // a call that overlaps this one goes first
		case <-changed:
		case <-time.After(2 * time.Second):
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("wgtest: %s is closed: %w", e.name, net.ErrClosed)
	}
	if e.setErr != nil {
		return e.setErr
	}
	if st.patch != nil && !e.bound {
		return errors.New("wgtest: Patch before the first Set")
	}
	e.steps = append(e.steps, st)
	e.bound = true
	if st.cfg != nil && st.cfg.ListenPort != 0 {
		e.port = st.cfg.ListenPort
	}
	close(e.changed)
	e.changed = make(chan struct{})
	return nil
}

// configs makes the Config of every step not yet made. Callers hold e.mu.
func (e *Engine) configs() []wg.Config {
	for i := len(e.made); i < len(e.steps); i++ {
		st := e.steps[i]
		if st.cfg != nil {
			e.made = append(e.made, *st.cfg)
			continue
		}
		e.made = append(e.made, patched(e.made[i-1], *st.patch))
	}
	return e.made
}

// patched is cfg with p applied: removed peers gone, patched ones
// replaced where they were, new ones last.
func patched(cfg wg.Config, p wg.Patch) wg.Config {
	cfg = clone(cfg)
	cfg.Peers = slices.DeleteFunc(cfg.Peers, func(q wg.Peer) bool { return slices.Contains(p.Remove, q.PublicKey) })
	for _, q := range p.Peers {
		if i := slices.IndexFunc(cfg.Peers, func(o wg.Peer) bool { return o.PublicKey == q.PublicKey }); i >= 0 {
			cfg.Peers[i] = q
		} else {
			cfg.Peers = append(cfg.Peers, q)
		}
	}
	return clone(cfg)
}

// HoldNextSet makes the next call of Set wait, once called, until another
// call has recorded its Config, or 2 s, before recording its own: the
// order in which a caller whose Sets overlap would apply an older state
// last. The channel closes when that call starts to wait.
func (e *Engine) HoldNextSet() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hold = make(chan struct{})
	return e.hold
}

// LikeKernel makes Discover fail after the first Set, as kernel
// WireGuard's does: WireGuard then holds the port STUN would be sent from.
func (e *Engine) LikeKernel() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kernel = true
}

// FailSet makes Set fail with err from now on; nil makes it work again.
func (e *Engine) FailSet(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setErr = err
}

// Configs returns every Config that Set and Patch made, in order.
func (e *Engine) Configs() []wg.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	made := e.configs()
	out := make([]wg.Config, len(made))
	for i, c := range made {
		out[i] = clone(c)
	}
	return out
}

// Calls counts the Sets and Patches accepted, and returns the last Patch.
func (e *Engine) Calls() (sets, patches int, last wg.Patch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range e.steps {
		if st.cfg != nil {
			sets++
		} else {
			patches++
			last = *st.patch
		}
	}
	return sets, patches, last
}

// Last returns the Config that Set or Patch made last, if any.
func (e *Engine) Last() (wg.Config, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	made := e.configs()
	if len(made) == 0 {
		return wg.Config{}, false
	}
	return clone(made[len(made)-1]), true
}

// Wait returns the latest Config once one that ok accepts has been made,
// or fails when ctx is done.
func (e *Engine) Wait(ctx context.Context, ok func(wg.Config) bool) (wg.Config, error) {
	for {
		e.mu.Lock()
		changed := e.changed
		made := e.configs()
		n := len(made)
		var last wg.Config
		if n > 0 {
			last = clone(made[n-1])
		}
		e.mu.Unlock()
		if n > 0 && ok(last) {
			return last, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return wg.Config{}, fmt.Errorf("wgtest: %s: no wanted Config after %d: %w", e.name, n, ctx.Err())
		}
	}
}

// SetPeers sets what Peers returns.
func (e *Engine) SetPeers(peers []wg.PeerStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers = slices.Clone(peers)
}

func (e *Engine) Peers() ([]wg.PeerStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("wgtest: %s is closed: %w", e.name, net.ErrClosed)
	}
	return slices.Clone(e.peers), nil
}

// SetDiscover sets what Discover returns: addr, or err if it is not nil.
// With neither, Discover waits for its context, like a silent server.
func (e *Engine) SetDiscover(addr netip.AddrPort, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mapped, e.stunErr = addr, err
}

// Probe answers at once, unless Block made to unreachable, or fails as a
// kernel engine's does after SetProbeUnsupported.
func (e *Engine) Probe(ctx context.Context, to netip.AddrPort) (time.Duration, error) {
	e.mu.Lock()
	blocked, unsupported := e.blocked[to], e.noProbe
	e.mu.Unlock()
	if unsupported {
		return 0, fmt.Errorf("wgtest: probes are off: %w", errors.ErrUnsupported)
	}
	if !blocked {
		return time.Millisecond, nil
	}
	<-ctx.Done()
	return 0, fmt.Errorf("wgtest: no answer from %v: %w", to, ctx.Err())
}

// SetProbeUnsupported makes Probe fail as kernel WireGuard's does.
func (e *Engine) SetProbeUnsupported(off bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noProbe = off
}

// Block makes probes to ep go unanswered (or answered again, if !blocked).
func (e *Engine) Block(ep netip.AddrPort, blocked bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.blocked == nil {
		e.blocked = map[netip.AddrPort]bool{}
	}
	e.blocked[ep] = blocked
}

// SetRelay records the relay connection and, like a real engine, reads
// it (so that its HELLOs get their answers), discarding the packets.
func (e *Engine) SetRelay(c *relay.Conn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.relay = c
	if c != nil {
		go func() {
			buf := make([]byte, 65535+relay.DataOverhead)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
	return nil
}

// Relay is the relay connection last set.
func (e *Engine) Relay() *relay.Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.relay
}

// Discover records server and returns what SetDiscover set.
func (e *Engine) Discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	e.mu.Lock()
	e.queried = append(e.queried, server)
	mapped, err := e.mapped, e.stunErr
	if e.kernel && e.bound {
		err = fmt.Errorf("wgtest: %s holds its port like kernel WireGuard: %w", e.name, errors.ErrUnsupported)
	}
	e.mu.Unlock()
	switch {
	case err != nil:
		return netip.AddrPort{}, err
	case mapped.IsValid():
		return mapped, nil
	}
	<-ctx.Done()
	return netip.AddrPort{}, fmt.Errorf("wgtest: STUN server %v did not answer: %w", server, ctx.Err())
}

// Queried returns the STUN servers Discover was asked to query, in order.
func (e *Engine) Queried() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.queried)
}

func (e *Engine) Port() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.port
}

func (e *Engine) Name() string { return e.name }
func (e *Engine) Kind() string { return Kind }

func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

// Closed reports whether Close was called.
func (e *Engine) Closed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func clone(cfg wg.Config) wg.Config {
	cfg.Peers = slices.Clone(cfg.Peers)
	for i := range cfg.Peers {
		cfg.Peers[i].AllowedIPs = slices.Clone(cfg.Peers[i].AllowedIPs)
	}
	cfg.Filter = cfg.Filter.Clone()
	return cfg
}
