package server

import (
	"net/http"
	"net/netip"
	"time"
)

// HoldRegistry locks the registry, as a slow operation under its lock
// would, until release is called.
func (s *Server) HoldRegistry() (release func()) {
	s.reg.mu.Lock()
	return s.reg.mu.Unlock
}

// Guard wraps h as the server wraps its handlers.
func (s *Server) Guard(h http.Handler) http.Handler { return s.guard(h) }

// TakeFullAnswers takes every turn to write a full /peers answer, as that
// many slow ones being written would, until release is called; polls
// that need one wait d for a turn.
func (s *Server) TakeFullAnswers(d time.Duration) (release func()) {
	was := fullWait
	fullWait = d
	for range cap(s.fullAnswers) {
		s.fullAnswers <- struct{}{}
	}
	return func() {
		for range cap(s.fullAnswers) {
			<-s.fullAnswers
		}
		fullWait = was
	}
}

// ResolveRelayPeersWith makes f the resolver of relay peer names, and
// resolves them again at once, as maintain's loop does every minute.
func (s *Server) ResolveRelayPeersWith(f func(string) (netip.AddrPort, error)) {
	s.relayMu.Lock()
	s.resolve = f
	s.relayMu.Unlock()
	s.refreshRelayPeers()
}

// MeshPeers are the relay's other relays now.
func (s *Server) MeshPeers() []netip.AddrPort { return s.relay.MeshPeers() }

// Sweep marks offline the nodes that fell silent or expired, as the
// server does every few seconds.
func (s *Server) Sweep() { s.reg.sweep() }
