package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wire-mesh/wire/server"
)

// State is what the page shows: the mesh, the join keys, and when.
type State struct {
	Nodes []server.MeshNode `json:"nodes"`
	Keys  []Key             `json:"keys"`
	At    time.Time         `json:"at"`
	CSRF  string            `json:"csrf,omitempty"` // only in GET /api/state's answer
}

// Key is a join key as the page lists it.
type Key struct {
	server.KeyInfo
	State string `json:"state"`
}

func (d *Dashboard) read(r *http.Request) (State, error) {
	keys, err := d.srv.Store().Keys(r.Context())
	if err != nil {
		return State{}, err
	}
	now := time.Now()
	st := State{Nodes: d.srv.Mesh().Nodes, Keys: make([]Key, len(keys)), At: now.UTC()}
	for i, k := range keys {
		st.Keys[i] = Key{k, k.State(now)}
	}
	return st, nil
}

func (d *Dashboard) state(w http.ResponseWriter, r *http.Request) {
	st, err := d.read(r)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "reading the store: %v", err)
		return
	}
	_, s, _ := d.session(r)
	st.CSRF = s.csrf
	reply(w, st)
}

// Live updates: the state again at each change of the mesh, at most every
// eventGap, and every eventRefresh anyway (last-seen times, keys' uses and
// relayed pairs change without a change of the map).
const (
	eventGap     = 250 * time.Millisecond
	eventRefresh = 5 * time.Second
)

// events streams the state as server-sent events, one whenever it
// changed, until the browser goes.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	var last []byte
	tick := time.NewTicker(eventRefresh)
	defer tick.Stop()
	for {
		changed := d.srv.Changed()
		st, err := d.read(r)
		if err == nil {
			st.At = time.Time{} // not a change by itself
			b, _ := json.Marshal(st)
			if !bytes.Equal(b, last) {
				last = b
				fmt.Fprintf(w, "data: %s\n\n", b)
				if rc.Flush() != nil {
					return
				}
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
		}
		select { // changes close together go as one
		case <-r.Context().Done():
			return
		case <-time.After(eventGap):
		}
	}
}

func (d *Dashboard) createKey(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Reusable   bool     `json:"reusable"`
		TTLSeconds int64    `json:"ttl_seconds"`
		Tags       []string `json:"tags"`
		ExpireSecs int64    `json:"expire_seconds"` // 0: its nodes never expire
	}
	if !decode(w, r, &req) {
		return
	}
	ttl, expire := time.Duration(req.TTLSeconds)*time.Second, time.Duration(req.ExpireSecs)*time.Second
	switch {
	case ttl < time.Minute || ttl > 365*24*time.Hour:
		fail(w, http.StatusBadRequest, "ttl_seconds %d: want a minute to a year", req.TTLSeconds)
		return
	case expire != 0 && (expire < time.Minute || expire > 10*365*24*time.Hour):
		fail(w, http.StatusBadRequest, "expire_seconds %d: want 0 (never), or a minute to ten years", req.ExpireSecs)
		return
	}
	tags, err := d.srv.Store().DeclaredTags(r.Context(), req.Tags)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	k, err := d.srv.CreateKeyWith(r.Context(), server.KeyOptions{Reusable: req.Reusable, Expires: expires, Tags: tags, NodeTTL: expire})
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	d.log.Info("dashboard: join key created", "id", k.ID, "reusable", req.Reusable, "expires", expires)
	reply(w, map[string]any{"id": k.ID, "key": k.String(), "expires_at": expires})
}

func (d *Dashboard) revokeKey(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		ID string `json:"id"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := d.srv.Store().RevokeKey(r.Context(), req.ID); err != nil {
		storeFail(w, err)
		return
	}
	d.log.Info("dashboard: join key revoked", "id", req.ID)
	reply(w, map[string]bool{"ok": true})
}

// nodeRequest names a node, and for a rename its new name.
type nodeRequest struct {
	Name    string `json:"name"`
	NewName string `json:"new_name,omitempty"`
}

func (d *Dashboard) renameNode(w http.ResponseWriter, r *http.Request, _ string) {
	var req nodeRequest
	if !decode(w, r, &req) {
		return
	}
	was, err := d.srv.Store().RenameNode(r.Context(), req.Name, req.NewName)
	if err != nil {
		storeFail(w, err)
		return
	}
	d.log.Info("dashboard: node renamed", "from", was, "to", req.NewName)
	reply(w, map[string]bool{"ok": true})
}

func (d *Dashboard) removeNode(w http.ResponseWriter, r *http.Request, _ string) {
	var req nodeRequest
	if !decode(w, r, &req) {
		return
	}
	removed, err := d.srv.Store().RemoveNode(r.Context(), req.Name)
	if err != nil {
		storeFail(w, err)
		return
	}
	d.log.Info("dashboard: node removed", "node", removed)
	reply(w, map[string]bool{"ok": true})
}

func (d *Dashboard) expireNode(w http.ResponseWriter, r *http.Request, _ string) {
	var req nodeRequest
	if !decode(w, r, &req) {
		return
	}
	expired, err := d.srv.Store().ExpireNode(r.Context(), req.Name, time.Now())
	if err != nil {
		storeFail(w, err)
		return
	}
	d.log.Info("dashboard: node expired", "node", expired)
	reply(w, map[string]bool{"ok": true})
}

// storeFail answers a store error: what the admin got wrong (no such
// node or key, a taken or bad name) as 4xx, the rest as 503.
func storeFail(w http.ResponseWriter, err error) {
	var conflict *server.ErrConflict
	switch {
	case errors.Is(err, server.ErrNotFound):
		fail(w, http.StatusNotFound, "%v", err)
	case errors.As(err, &conflict):
		fail(w, http.StatusConflict, "%v", err)
	case errors.Is(err, server.ErrStoreUnavailable):
		fail(w, http.StatusServiceUnavailable, "%v", err)
	default:
		fail(w, http.StatusBadRequest, "%v", err)
	}
}

// decode reads a small JSON body into v, or answers 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad JSON: %v", err)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}
