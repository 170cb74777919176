package server

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
)

// A full answer to /peers is the same for every node that sees the whole
// mesh (there is no policy): it is built and encoded once per version and
// shared, not once per request. At 10,000 nodes one is about 2 MB, and
// after a server restart every node asks for one at once.

// fullAnswer is the encoded full answer at one version.
type fullAnswer struct {
	version uint64
	resp    api.PeersResponse
	once    sync.Once
	body    []byte
}

// encoded is the answer as writeJSON would write it, encoded on first use.
func (f *fullAnswer) encoded() []byte {
	f.once.Do(func() {
		b, err := json.Marshal(f.resp)
		if err != nil {
			panic(err) // a PeersResponse always encodes
		}
		f.body = append(b, '\n')
	})
	return f.body
}

// sharedFull is the encoded full answer to a poll from since by the node
// with id viewer, if the answer is a full one that every node shares: a
// version it cannot give a delta from, and no policy to filter it by.
// The peers are gathered under r.mu; the encoding is done outside it.
func (r *registry) sharedFull(since, viewer string) ([]byte, bool) {
	f := r.shareFull(since, viewer)
	if f == nil {
		return nil, false
	}
	return f.encoded(), true
}

func (r *registry) shareFull(since, viewer string) *fullAnswer {
	r.mu.Lock()
	defer r.mu.Unlock()
	vw := r.viewOf(viewer)
	if since == "" || vw.viewer != nil || !r.needsFull(since, vw) {
		return nil
	}
	if r.full == nil || r.full.version != r.version {
		resp := api.PeersResponse{Peers: r.online(vw), Full: true, Version: r.versionString()}
		r.full = &fullAnswer{version: r.version, resp: resp}
	}
	return r.full
}

// writeBody writes an encoded JSON answer.
func writeBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// Full answers take turns. When a whole fresh mesh asks at once (every
// node joining together, or a server restarted past its change log), the
// server would otherwise write thousands of 2 MB answers at once, each
// slowly, until clients time out and ask again: more bytes for the same
// maps. So at most maxFullAnswers full answers are written at a time; a poll
// that needs one waits up to fullWait for a turn, and is then told to
// come back (503 with a Retry-After of a few seconds, spread at random so
// the refused do not return together). A client that honours it, as
// wire's daemon does, loses nothing: its next poll asks for the same
// answer.
var (
	maxFullAnswers = max(8, 4*runtime.GOMAXPROCS(0))
	fullWait       = 2 * time.Second // a variable for tests
)

// fullRetryMin and fullRetryMax bound the Retry-After a shed poll is given, in
// seconds.
const fullRetryMin, fullRetryMax = 2, 6

// fullSlots is a semaphore of full answers being written.
type fullSlots chan struct{}

// take waits up to fullWait for a turn, or until the request is done;
// false says none came.
func (t fullSlots) take(r *http.Request) bool {
	select {
	case t <- struct{}{}:
		return true
	default:
	}
	timer := time.NewTimer(fullWait)
	defer timer.Stop()
	select {
	case t <- struct{}{}:
		return true
	case <-timer.C:
	case <-r.Context().Done():
	}
	return false
}

func (t fullSlots) give() { <-t }

// writeFull writes a full answer in a turn, or sheds the poll.
func (s *Server) writeFull(w http.ResponseWriter, r *http.Request, write func()) {
	if !s.fullAnswers.take(r) {
		s.stats.shedFull.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(fullRetryMin+rand.IntN(fullRetryMax-fullRetryMin+1)))
		httpError(w, http.StatusServiceUnavailable, "the server is sending the whole map to many nodes just now: try again in a few seconds")
		return
	}
	defer s.fullAnswers.give()
	write()
}
