package mcp

import (
	"context"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// pollEvery is how often subscribed resources are re-read, so that a
// change reaches subscribers within a second.
const pollEvery = 300 * time.Millisecond

// watcher polls the subscribed resources and notifies on change.
type watcher struct {
	s    *Server
	mu   sync.Mutex
	subs map[string]int    // URI -> subscriptions
	last map[string]string // URI -> essence last seen
}

func newWatcher(s *Server) *watcher {
	return &watcher{s: s, subs: map[string]int{}, last: map[string]string{}}
}

func (w *watcher) subscribe(ctx context.Context, req *sdk.SubscribeRequest) error {
	uri := req.Params.URI
	if _, inbox := inboxPeer(uri); uri != StatusURI && uri != PeersURI && !inbox {
		return sdk.ResourceNotFoundError(uri)
	}
	e := w.s.essence(ctx, uri)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[uri] == 0 {
		w.last[uri] = e
	}
	w.subs[uri]++
	return nil
}

func (w *watcher) unsubscribe(_ context.Context, req *sdk.UnsubscribeRequest) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[req.Params.URI] > 0 {
		w.subs[req.Params.URI]--
	}
	return nil
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, uri := range w.subscribed() {
			w.poll(ctx, uri)
		}
	}
}

func (w *watcher) subscribed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var uris []string
	for uri, n := range w.subs {
		if n > 0 {
			uris = append(uris, uri)
		}
	}
	return uris
}

func (w *watcher) poll(ctx context.Context, uri string) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e := w.s.essence(pctx, uri)
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	changed := w.last[uri] != e
	w.last[uri] = e
	w.mu.Unlock()
	if changed {
		w.s.log.Debug("resource changed", "uri", uri)
		w.s.srv.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: uri})
	}
}
