package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
	"github.com/wire-mesh/wire/internal/connlimit"
)

// Paths of the agent API that nodes serve each other over the tunnel.
const (
	pathIdentity = "/v1/identity"
	pathEvents   = "/v1/events"
)

// peerLimits bound the connections peers may hold to the agent.
var peerLimits = connlimit.Limits{Total: 256, PerKey: 8, Idle: 30 * time.Second}

// Serve answers peers on the VPN address and runs the outbox until ctx
// ends. The address may not be there yet (the interface is coming up, or
// was replaced), so listening is retried.
func (a *Agent) Serve(ctx context.Context) {
	var loops sync.WaitGroup
	defer loops.Wait() // the store may be closed once Serve returns
	loops.Go(func() { a.runOutbox(ctx) })
	loops.Go(func() { a.pairing.expire(ctx) })
	warned := false
	for ctx.Err() == nil {
		ln, err := a.listen(ctx)
		if err != nil {
			if !warned {
				a.log.Info("agent: cannot listen yet; retrying", "err", err)
				warned = true
			}
			sleep(ctx, 2*time.Second)
			continue
		}
		warned = false
		a.log.Debug("agent: listening", "addr", ln.Addr())
		a.serveOn(ctx, ln)
	}
}

func (a *Agent) serveOn(ctx context.Context, ln net.Listener) {
	conns := connlimit.New(peerLimits, func(c net.Conn) (string, bool) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		return host, false
	}, nil)
	srv := &http.Server{
		Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10, ConnState: conns.State,
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(conns.Listener(ln)); ctx.Err() == nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Warn("agent: listener failed; listening again", "err", err)
		sleep(ctx, time.Second)
	}
}

func (a *Agent) listen(ctx context.Context) (net.Listener, error) {
	lc := net.ListenConfig{Control: bindToDevice(a.opts.Interface)}
	return lc.Listen(ctx, "tcp", net.JoinHostPort(a.opts.Self.String(), strconv.Itoa(a.opts.Port)))
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathIdentity, a.fromPeer(func(w http.ResponseWriter, r *http.Request, _ api.Peer) {
		reply(w, http.StatusOK, identityReply{IdentityKey: a.self})
	}))
	mux.HandleFunc("POST "+pathEvents, a.fromPeer(a.handleEvent))
	mux.HandleFunc("POST "+pathPair, a.fromPeer(a.pairing.handle))
	return mux
}

type identityReply struct {
	IdentityKey string `json:"identity_key"`
}

// deliveryReply answers POST /v1/events: the event is durably stored.
type deliveryReply struct {
	Stored    bool `json:"stored"`
	Duplicate bool `json:"duplicate,omitempty"`
}

// fromPeer admits only the online peers of the mesh, known by the VPN
// address they call from (which WireGuard authenticates).
func (a *Agent) fromPeer(h func(http.ResponseWriter, *http.Request, api.Peer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		p, ok := a.peerAt(ap.Addr())
		if err != nil || !ok {
			reply(w, http.StatusForbidden, api.Error{Error: "only peers of this mesh may call this node's agent"})
			return
		}
		h(w, r, p)
	}
}

// Why an event is refused.
var (
	errBlocked     = errors.New("this node has blocked the sender")
	errRateLimited = errors.New("too many events from this sender; try again shortly")
	errNotForMe    = errors.New("the event is addressed to another identity key")
)

func (a *Agent) handleEvent(w http.ResponseWriter, r *http.Request, p api.Peer) {
	code, err := a.admit(r, p)
	if err != nil {
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		reply(w, code, api.Error{Error: err.Error()})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, event.MaxSize))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, api.Error{Error: event.ErrTooLarge.Error()})
		return
	}
	e, row, err := a.check(r.Context(), raw, p)
	if err != nil {
		reply(w, http.StatusForbidden, api.Error{Error: err.Error()})
		return
	}
	fresh, err := a.store.receive(r.Context(), stored{
		EventID: e.EventID, NodeID: row.NodeID, Kind: e.Kind, Body: string(e.Body), Raw: string(raw), At: a.opts.Now().UnixMilli(),
	})
	if err != nil {
		a.log.Error("agent: storing a received event", "err", err)
		reply(w, http.StatusServiceUnavailable, api.Error{Error: "the receiving node could not store the event"})
		return
	}
	if fresh {
		a.log.Debug("agent: event received", "from", p.NodeName, "kind", e.Kind, "event_id", e.EventID)
	}
	reply(w, http.StatusOK, deliveryReply{Stored: true, Duplicate: !fresh})
}

// admit applies blocks and rate limits before the body is read.
func (a *Agent) admit(r *http.Request, p api.Peer) (int, error) {
	row, err := a.store.peer(r.Context(), p.NodeID)
	if err != nil {
		return http.StatusServiceUnavailable, fmt.Errorf("the receiving node does not know the sender yet: %w", err)
	}
	if row.Blocked {
		return http.StatusForbidden, errBlocked
	}
	if !a.allow(p.NodeID, a.opts.Now()) {
		return http.StatusTooManyRequests, errRateLimited
	}
	return 0, nil
}

// check verifies an event from peer p: its signature, that it is signed by
// the key this node trusts for p, and that it is for this node.
func (a *Agent) check(ctx context.Context, raw []byte, p api.Peer) (event.Event, peerRow, error) {
	e, err := event.Parse(raw)
	if err != nil {
		return e, peerRow{}, err
	}
	if err := e.Verify(); err != nil {
		return e, peerRow{}, err
	}
	if e.To != a.self {
		return e, peerRow{}, errNotForMe
	}
	row, err := a.store.peer(ctx, p.NodeID)
	if err != nil {
		return e, row, err
	}
	if err := acceptsKey(row, e.From); err != nil {
		return e, row, err
	}
	if row.IdentityKey != e.From && row.PinnedKey == "" {
		// Learned for free: the server vouches for it.
		a.store.setPeerField(ctx, row.NodeID, "identity_key", e.From)
	}
	return e, row, nil
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
