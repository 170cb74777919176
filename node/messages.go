package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

// The daemon's side of messaging: it opens the agent, keeps it told of
// the online peers, and serves it on the control socket. Reading what
// the node received and sending as the node need root, as wire down does:
// the identity key is the node's, not a user's.

// openAgent opens the agent; a node whose agent store cannot be opened
// still runs its tunnels, and says why messaging is off.
func (d *Daemon) openAgent() {
	self, err := netip.ParseAddr(d.cfg.VPNIP)
	key, ok := d.keys.Identity.PrivateKey.(ed25519.PrivateKey)
	if err != nil || !ok {
		d.agentErr = errors.New("messaging is off: this node has no VPN address or identity key yet")
		return
	}
	a, err := agent.Open(agent.Options{Dir: d.dir, Key: key, Self: self, Interface: d.cfg.Interface, Logger: d.log})
	if err != nil {
		d.agentErr = err
		d.log.Error("messaging is off", "err", err)
		return
	}
	d.agent = a
}

// tellAgent gives the agent the online peers.
func (d *Daemon) tellAgent(ctx context.Context) {
	if d.agent == nil {
		return
	}
	d.mu.Lock()
	peers := make([]api.Peer, 0, len(d.peers))
	for _, p := range d.peers {
		peers = append(peers, p)
	}
	d.mu.Unlock()
	d.agent.SetPeers(ctx, peers)
}

func (d *Daemon) serveAgent(ctx context.Context) {
	if d.agent != nil {
		d.agent.Serve(ctx)
	}
}

// withTrust adds to each peer this node's trust in it.
func (d *Daemon) withTrust(ctx context.Context, peers []PeerStatus) {
	if d.agent == nil {
		return
	}
	trust, err := d.agent.Trust(ctx)
	if err != nil {
		d.log.Warn("reading trust", "err", err)
	}
	byName := map[string]agent.Trust{} // for peers the daemon has no node_id of
	for _, t := range trust {
		byName[strings.ToLower(t.NodeName)] = t
	}
	for i, p := range peers {
		t, ok := trust[p.NodeID]
		if !ok {
			t, ok = byName[strings.ToLower(p.NodeName)]
		}
		if !ok {
			t.Tier = agent.Introduced
		}
		peers[i].Tier, peers[i].KeyAlert = t.Tier, t.KeyAlert
	}
}

// SendRequest is the body of POST /v1/send.
type SendRequest struct {
	Peer string          `json:"peer"`
	Kind string          `json:"kind,omitempty"`
	Body json.RawMessage `json:"body"`
}

// Identity is this node's identity key, as GET /v1/identity gives it.
type Identity struct {
	IdentityKey string `json:"identity_key"`
	Fingerprint string `json:"fingerprint"`
	// Messaging is "on", or why it is off.
	Messaging string `json:"messaging"`
}

// identityOf is a node identity's key, as events carry it, and its pin.
func identityOf(keys Keys) (key, fingerprint string) {
	if pub, ok := keys.Identity.Leaf.PublicKey.(ed25519.PublicKey); ok {
		key = event.EncodeKey(pub)
	}
	return key, api.PinOf(keys.Identity.Leaf).String()
}

func (d *Daemon) identity() Identity {
	id := Identity{Messaging: "on"}
	id.IdentityKey, id.Fingerprint = identityOf(d.keys)
	if d.agent == nil {
		id.Messaging = d.messagingOff().Error()
	}
	return id
}

// messagingOff says why the agent is not running.
func (d *Daemon) messagingOff() error {
	if d.agentErr != nil {
		return d.agentErr
	}
	return errors.New("messaging is off: the daemon is starting")
}

// messageRoutes are the control API's messaging endpoints.
func (d *Daemon) messageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/identity", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, d.identity())
	})
	mux.HandleFunc("POST /v1/verify", d.withAgent(false, func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, event.MaxSize+1))
		if err != nil {
			reply(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		v, err := d.agent.Verify(r.Context(), raw)
		replyOr(w, v, err)
	}))
	mux.HandleFunc("POST /v1/send", d.withAgent(true, d.handleSend))
	mux.HandleFunc("GET /v1/events", d.withAgent(true, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, _ := strconv.ParseInt(q.Get("since"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		res, err := d.agent.Tail(r.Context(), agent.TailQuery{Peer: q.Get("peer"), Since: since, Limit: limit, Sent: q.Get("sent") == "true"})
		replyOr(w, res, err)
	}))
	mux.HandleFunc("POST /v1/block", d.withAgent(true, func(w http.ResponseWriter, r *http.Request) {
		var req BlockRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.Peer == "" {
			reply(w, http.StatusBadRequest, errorBody{`want {"peer": NAME or VPN IP, "blocked": true or false}`})
			return
		}
		name, err := d.agent.Block(r.Context(), req.Peer, req.Blocked)
		replyOr(w, BlockRequest{Peer: name, Blocked: req.Blocked}, err)
	}))
}

// BlockRequest is the body of POST /v1/block, and its answer.
type BlockRequest struct {
	Peer    string `json:"peer"`
	Blocked bool   `json:"blocked"`
}

// withAgent refuses a messaging request while messaging is off, and one
// that needs root from anyone else.
func (d *Daemon) withAgent(needRoot bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case needRoot && !isRoot(r):
			reply(w, http.StatusForbidden, errorBody{"messages are the node's: reading and sending them needs root (run it with sudo)"})
		case d.agent == nil:
			reply(w, http.StatusServiceUnavailable, errorBody{d.messagingOff().Error()})
		default:
			h(w, r)
		}
	}
}

func (d *Daemon) handleSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, event.MaxSize+4096)).Decode(&req); err != nil || req.Peer == "" || len(req.Body) == 0 {
		reply(w, http.StatusBadRequest, errorBody{`want {"peer": NAME or VPN IP, "kind": KIND, "body": JSON}`})
		return
	}
	if req.Kind == "" {
		req.Kind = "message"
	}
	res, err := d.agent.Send(r.Context(), req.Peer, req.Kind, req.Body)
	if err != nil && res.Verdict == "" {
		code := http.StatusBadRequest
		if errors.Is(err, agent.ErrUnknownPeer) {
			code = http.StatusNotFound
		}
		reply(w, code, errorBody{err.Error()})
		return
	}
	reply(w, http.StatusOK, res) // a failed verdict is an answer, with its reason
}

func replyOr(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, agent.ErrUnknownPeer):
		reply(w, http.StatusNotFound, errorBody{err.Error()})
	case err != nil:
		reply(w, http.StatusInternalServerError, errorBody{err.Error()})
	default:
		reply(w, http.StatusOK, v)
	}
}

// Identity asks for the node's identity key.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	return id, c.do(ctx, http.MethodGet, "/v1/identity", nil, &id)
}

// Send signs an event as the node and delivers or queues it. A failed
// verdict comes back as the result, with its reason, and as an error.
func (c *Client) Send(ctx context.Context, req SendRequest) (agent.SendResult, error) {
	var res agent.SendResult
	if err := c.do(ctx, http.MethodPost, "/v1/send", req, &res); err != nil {
		return res, err
	}
	if res.Verdict == agent.Failed {
		return res, errors.New(res.Reason)
	}
	return res, nil
}

// Tail reads the node's recent events.
func (c *Client) Tail(ctx context.Context, q agent.TailQuery) (agent.TailResult, error) {
	v := url.Values{}
	if q.Peer != "" {
		v.Set("peer", q.Peer)
	}
	v.Set("since", strconv.FormatInt(q.Since, 10))
	v.Set("limit", strconv.Itoa(q.Limit))
	v.Set("sent", strconv.FormatBool(q.Sent))
	var res agent.TailResult
	return res, c.do(ctx, http.MethodGet, "/v1/events?"+v.Encode(), nil, &res)
}

// Verify checks a signed event, given as JSON.
func (c *Client) Verify(ctx context.Context, raw json.RawMessage) (agent.Verification, error) {
	var v agent.Verification
	return v, c.do(ctx, http.MethodPost, "/v1/verify", raw, &v)
}

// Block blocks or unblocks a peer; it returns the peer's name.
func (c *Client) Block(ctx context.Context, peer string, blocked bool) (string, error) {
	var res BlockRequest
	err := c.do(ctx, http.MethodPost, "/v1/block", BlockRequest{Peer: peer, Blocked: blocked}, &res)
	return res.Peer, err
}

// pairRoutes are the control API's pairing endpoints; all need root.
func (d *Daemon) pairRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/pair", d.withAgent(true, func(w http.ResponseWriter, r *http.Request) {
		var req PairRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || (req.Peer == "") == (req.Code == "") {
			reply(w, http.StatusBadRequest, errorBody{`want {"peer": NAME} to pair, or {"code": CODE} to join`})
			return
		}
		var st agent.PairStatus
		var err error
		if req.Peer != "" {
			st, err = d.agent.Initiate(r.Context(), req.Peer)
		} else {
			st, err = d.agent.Join(r.Context(), req.Code)
		}
		pairReply(w, st, err)
	}))
	mux.HandleFunc("GET /v1/pair/{id}", d.withAgent(true, func(w http.ResponseWriter, r *http.Request) {
		st, err := d.agent.Check(r.PathValue("id"))
		pairReply(w, st, err)
	}))
	mux.HandleFunc("POST /v1/pair/{id}/confirm", d.withAgent(true, func(w http.ResponseWriter, r *http.Request) {
		var req PairRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.Digits == "" {
			reply(w, http.StatusBadRequest, errorBody{`want {"digits": "123456"}: the digits the other side read out`})
			return
		}
		st, err := d.agent.Confirm(r.Context(), r.PathValue("id"), req.Digits)
		pairReply(w, st, err)
	}))
}

// PairRequest is the body of the pairing endpoints.
type PairRequest struct {
	Peer   string `json:"peer,omitempty"`
	Code   string `json:"code,omitempty"`
	Digits string `json:"digits,omitempty"`
}

func pairReply(w http.ResponseWriter, st agent.PairStatus, err error) {
	switch {
	case err != nil && st.SessionID != "":
		reply(w, http.StatusOK, st) // the session's state says what happened
	case err != nil:
		reply(w, http.StatusBadRequest, errorBody{err.Error()})
	default:
		reply(w, http.StatusOK, st)
	}
}

// Pair opens a pairing session with a peer.
func (c *Client) Pair(ctx context.Context, peer string) (agent.PairStatus, error) {
	var st agent.PairStatus
	return st, c.do(ctx, http.MethodPost, "/v1/pair", PairRequest{Peer: peer}, &st)
}

// PairJoin joins the session a code phrase names.
func (c *Client) PairJoin(ctx context.Context, code string) (agent.PairStatus, error) {
	var st agent.PairStatus
	return st, c.do(ctx, http.MethodPost, "/v1/pair", PairRequest{Code: code}, &st)
}

// PairCheck reads a session's state.
func (c *Client) PairCheck(ctx context.Context, id string) (agent.PairStatus, error) {
	var st agent.PairStatus
	return st, c.do(ctx, http.MethodGet, "/v1/pair/"+url.PathEscape(id), nil, &st)
}

// PairConfirm gives the digits the person typed.
func (c *Client) PairConfirm(ctx context.Context, id, digits string) (agent.PairStatus, error) {
	var st agent.PairStatus
	return st, c.do(ctx, http.MethodPost, "/v1/pair/"+url.PathEscape(id)+"/confirm", PairRequest{Digits: digits}, &st)
}
