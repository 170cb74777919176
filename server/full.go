package server

import (
	"encoding/json"
	"net/http"
	"sync"

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
