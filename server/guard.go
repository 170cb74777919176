package server

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// warnings logs at warning level, at most a burst and then one a second,
// so that a flood of bad handshakes cannot flood the log; what it had to
// leave out is counted in the next record it writes.
type warnings struct {
	log *slog.Logger
	mu  sync.Mutex
	lim *rate.Limiter
	// suppressed is how many records were left out since the last one.
	suppressed int
}

func newWarnings(log *slog.Logger) *warnings {
	return &warnings{log: log, lim: rate.NewLimiter(1, 10)}
}

func (w *warnings) warn(msg string, args ...any) {
	w.mu.Lock()
	if !w.lim.Allow() {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	if w.suppressed > 0 {
		args = append(args, "suppressed", w.suppressed)
		w.suppressed = 0
	}
	w.mu.Unlock()
	w.log.Warn(msg, args...)
}

// guard recovers a handler's panic: the request gets a 500 in JSON, the
// panic is counted and logged as a warning with its route and stack (never
// the request's body or headers, which may hold a join key or the admin
// token), and the server goes on.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v) // net/http's own way to abort a response
				}
				return
			}
			s.stats.panics.Add(1)
			s.warnings.warn("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			httpError(w, http.StatusInternalServerError, "the server failed on this request; its log says why")
		}()
		next.ServeHTTP(w, r)
	})
}

// stats count what the server does that an operator would want to see.
type stats struct {
	panics, tlsErrors, shedFull atomic.Uint64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Panics             uint64 // handler panics recovered
	TLSHandshakeErrors uint64 // TLS handshakes that failed
	ConnsOpen          int    // HTTP connections held now
	ConnsRefused       uint64 // refused: every connection was an enrolled node's
	ConnsEvicted       uint64 // closed to make room for a newer one
	ShedFull           uint64 // polls told to come back: too many full answers were being written
}

// Stats returns the server's counters now.
func (s *Server) Stats() Stats {
	c := s.conns.Stats()
	return Stats{
		Panics: s.stats.panics.Load(), TLSHandshakeErrors: s.stats.tlsErrors.Load(),
		ConnsOpen: c.Open, ConnsRefused: c.Refused, ConnsEvicted: c.Evicted, ShedFull: s.stats.shedFull.Load(),
	}
}

// errorLog takes net/http's own complaints (TLS handshake failures from
// scanners and clients with the wrong pin, mostly): they are counted and
// logged as rate-limited warnings.
func (s *Server) errorLog() *httpErrors { return &httpErrors{s} }

type httpErrors struct{ s *Server }

func (h *httpErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "use of closed network connection") {
		// A connection the server closed itself, to make room (see conns)
		// or at shutdown: counted there, not a client's doing.
		h.s.log.Debug(msg, "from", "net/http")
		return len(p), nil
	}
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		h.s.stats.tlsErrors.Add(1)
	}
	h.s.warnings.warn(msg, "from", "net/http")
	return len(p), nil
}
