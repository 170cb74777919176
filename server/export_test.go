package server

// HoldRegistry locks the registry, as a slow operation under its lock
// would, until release is called.
func (s *Server) HoldRegistry() (release func()) {
	s.reg.mu.Lock()
	return s.reg.mu.Unlock
}
