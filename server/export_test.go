package server

import "net/http"

// HoldRegistry locks the registry, as a slow operation under its lock
// would, until release is called.
func (s *Server) HoldRegistry() (release func()) {
	s.reg.mu.Lock()
	return s.reg.mu.Unlock
}

// Guard wraps h as the server wraps its handlers.
func (s *Server) Guard(h http.Handler) http.Handler { return s.guard(h) }
