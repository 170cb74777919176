package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/wire-mesh/wire/event"
)

// Entry is one event as wire_tail shows it.
type Entry struct {
	Seq       int64           `json:"seq" jsonschema:"its place in this node's event log; pass the last one as since to read only newer ones"`
	Direction string          `json:"direction" jsonschema:"in (received) or out (sent by this node)"`
	Peer      string          `json:"peer" jsonschema:"the other node's name"`
	Tier      string          `json:"tier" jsonschema:"the other node's trust tier now: introduced, verified or blocked"`
	Verified  bool            `json:"verified" jsonschema:"the signature and id check, and the key is the one this node trusts for the peer"`
	Problem   string          `json:"problem,omitempty" jsonschema:"why verified is false"`
	Kind      string          `json:"kind"`
	Body      json.RawMessage `json:"body"`
	Time      string          `json:"time" jsonschema:"when it was received (in) or written (out)"`
	Status    string          `json:"status,omitempty" jsonschema:"out only: delivered, queued or failed"`
	Reason    string          `json:"reason,omitempty"`
	Event     *event.Event    `json:"event,omitempty" jsonschema:"the signed event, for wire_verify or anyone holding the sender's key"`
}

// TailQuery selects events.
type TailQuery struct {
	Peer  string `json:"peer,omitempty"`
	Since int64  `json:"since,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// Sent includes this node's own events, with their delivery state.
	Sent bool `json:"sent,omitempty"`
}

// TailResult is what Tail returns.
type TailResult struct {
	Events []Entry `json:"events"`
	// Last is the seq of the newest event returned or, with none, since.
	Last int64 `json:"last"`
}

// Tail reads recent events, newest last.
func (a *Agent) Tail(ctx context.Context, q TailQuery) (TailResult, error) {
	nodeID := ""
	if q.Peer != "" {
		p, err := a.find(ctx, q.Peer)
		if err != nil {
			return TailResult{}, err
		}
		nodeID = p.NodeID
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 1000)
	dir := "in"
	if q.Sent {
		dir = ""
	}
	rows, err := a.store.tail(ctx, dir, nodeID, q.Since, q.Limit)
	if err != nil {
		return TailResult{}, err
	}
	peers, err := a.peerRows(ctx)
	if err != nil {
		return TailResult{}, err
	}
	res := TailResult{Events: []Entry{}, Last: q.Since}
	for _, r := range rows {
		res.Events = append(res.Events, a.entry(r, peers[r.NodeID]))
		res.Last = r.Seq
	}
	return res, nil
}

func (a *Agent) peerRows(ctx context.Context) (map[string]peerRow, error) {
	rows, err := a.store.peers(ctx)
	m := make(map[string]peerRow, len(rows))
	for _, r := range rows {
		m[r.NodeID] = r
	}
	return m, err
}

// entry checks a stored event again as it is read: what was verified on
// arrival is verified anew against the store and today's trust.
func (a *Agent) entry(r stored, p peerRow) Entry {
	en := Entry{
		Seq: r.Seq, Direction: r.Dir, Peer: p.NodeName, Tier: tier(p), Kind: r.Kind, Body: json.RawMessage(r.Body),
		Time: time.UnixMilli(r.At).UTC().Format(event.TimeFormat), Status: r.Status, Reason: r.Reason,
	}
	if r.Raw == "" {
		en.Problem = "not signed yet: it waits for the peer's identity key"
		return en
	}
	e, err := event.Parse([]byte(r.Raw))
	if err == nil {
		en.Event = &e
		err = e.Verify()
	}
	if err == nil && r.Dir == "in" {
		err = acceptsKey(p, e.From)
	}
	if err == nil && r.Dir == "out" && e.From != a.self {
		err = errors.New("not signed by this node's identity key")
	}
	if err != nil {
		en.Problem = err.Error()
	}
	en.Verified = err == nil
	return en
}

// Verification is what Verify says of an event.
type Verification struct {
	Valid   bool   `json:"valid" jsonschema:"the event id is its hash and the signature is by the key in from"`
	Error   string `json:"error,omitempty"`
	EventID string `json:"event_id,omitempty"`
	From    string `json:"from,omitempty"`
	// Signer is who holds the key in from, as this node knows it.
	Signer string `json:"signer,omitempty" jsonschema:"the node whose identity key signed it: a peer's name, this node, or empty when the key is unknown"`
	Tier   string `json:"tier,omitempty" jsonschema:"the signer's trust tier: introduced, verified, blocked, or self"`
	Known  bool   `json:"known" jsonschema:"the key belongs to a known peer (or this node)"`
}

// Verify checks an event given as JSON, offline: its id and signature,
// and whose key signed it.
func (a *Agent) Verify(ctx context.Context, raw []byte) (Verification, error) {
	e, err := event.Parse(raw)
	if err == nil {
		err = e.Verify()
	}
	v := Verification{Valid: err == nil, EventID: e.EventID, From: e.From}
	if err != nil {
		v.Error = err.Error()
		return v, nil
	}
	if e.From == a.self {
		v.Signer, v.Tier, v.Known = "this node", "self", true
		return v, nil
	}
	peers, err := a.store.peers(ctx)
	if err != nil {
		return v, err
	}
	for _, p := range peers {
		if acceptsKey(p, e.From) == nil {
			v.Signer, v.Tier, v.Known = p.NodeName, tier(p), true
			break
		}
	}
	return v, nil
}
