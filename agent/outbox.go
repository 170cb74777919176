package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

// Verdicts of a send. Each is true when reported: delivered means the
// peer's daemon said it had stored the event durably; queued means this
// node's outbox has stored it durably and will deliver it when it can.
const (
	Delivered = "delivered"
	Queued    = "queued"
	Failed    = "failed"
)

const (
	sendTimeout = 10 * time.Second
	// retryEvery bounds the backoff of the outbox for a peer that is
	// online but does not answer; a peer coming online is retried at once.
	retryEvery = 15 * time.Second
	// queueFor is how long an event waits for its peer before it fails.
	queueFor = 7 * 24 * time.Hour
)

// SendResult is the verdict of a send.
type SendResult struct {
	Verdict string `json:"verdict" jsonschema:"delivered (the peer stored it durably), queued (held in this node's outbox until the peer can take it) or failed"`
	EventID string `json:"event_id,omitempty" jsonschema:"the event's id; empty for an event queued before the peer's identity key is known (it is signed when delivered)"`
	Peer    string `json:"peer" jsonschema:"the peer's name"`
	Reason  string `json:"reason,omitempty" jsonschema:"why it was queued or failed"`
	Seq     int64  `json:"seq,omitempty" jsonschema:"the event's place in this node's outbox (wire_tail with sent shows its state)"`
}

// ErrSend says a send failed; the error says why.
var ErrSend = errors.New("send failed")

// Send signs an event and delivers it to a peer (by name, VPN IP or
// node_id), or queues it if the peer cannot take it now. Input errors
// (a bad kind, a body too large) and refusals are errors wrapping ErrSend.
func (a *Agent) Send(ctx context.Context, who, kind string, body json.RawMessage) (SendResult, error) {
	if err := event.CheckDraft(kind, body); err != nil {
		return SendResult{}, err
	}
	p, err := a.find(ctx, who)
	if err != nil {
		return SendResult{}, fmt.Errorf("%w: %w (wire peers lists them)", ErrSend, err)
	}
	res := SendResult{Peer: p.NodeName}
	if p.Blocked {
		return res, fmt.Errorf("%w: you have blocked %s (wire block --undo %s)", ErrSend, p.NodeName, p.NodeName)
	}
	if p.KeyAlert != "" && p.PinnedKey == "" {
		return res, fmt.Errorf("%w: %s", ErrSend, p.KeyAlert)
	}
	draft := stored{NodeID: p.NodeID, Kind: kind, Body: string(body), At: a.opts.Now().UnixMilli()}
	key, refusal := a.keyFor(ctx, p)
	switch {
	case refusal != "":
		res.Verdict, res.Reason = Failed, refusal
		return res, fmt.Errorf("%w: %s", ErrSend, refusal)
	case key != "":
		if err := a.signDraft(&draft, key); err != nil {
			return res, err
		}
	default:
		draft.Reason = fmt.Sprintf("%s is offline and its identity key is not known yet: the event is signed and sent when it comes online", p.NodeName)
	}
	// Events wait their turn: behind older ones queued for the same peer
	// (it did not answer them, or was offline), this one is queued too,
	// and the outbox delivers them in order.
	lock := a.peerLock(p.NodeID)
	lock.Lock()
	defer lock.Unlock()
	older, err := a.store.queuedSeqs(ctx, p.NodeID, 1)
	behind := len(older) > 0 || err != nil
	seq, err := a.store.queue(ctx, draft)
	if err != nil {
		return res, fmt.Errorf("%w: this node could not store the event: %w", ErrSend, err)
	}
	draft.Seq = seq
	res.Seq, res.EventID = seq, draft.EventID
	if behind {
		a.kickOutbox()
		res.Verdict, res.Reason = Queued, fmt.Sprintf("older events for %s wait in the outbox; this one is delivered after them", p.NodeName)
		return res, nil
	}
	out := a.attempt(ctx, draft, p)
	res.Verdict, res.Reason, res.EventID = out.status, out.reason, out.eventID
	if out.status == Failed {
		return res, fmt.Errorf("%w: %s", ErrSend, out.reason)
	}
	return res, nil
}

// signDraft makes the draft a signed event to key.
func (a *Agent) signDraft(d *stored, key string) error {
	to, err := event.DecodeKey(key)
	if err != nil {
		return err
	}
	e, err := event.New(a.opts.Key, to, d.Kind, json.RawMessage(d.Body), time.UnixMilli(d.At))
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(e)
	d.EventID, d.Raw = e.EventID, string(raw)
	return nil
}

// outcome is what one delivery attempt came to.
type outcome struct{ status, reason, eventID string }

func (a *Agent) kickOutbox() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// peerLock serialises deliveries to one peer, so that its events arrive
// in the order they were sent.
func (a *Agent) peerLock(nodeID string) *sync.Mutex {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.sending[nodeID]
	if !ok {
		l = &sync.Mutex{}
		a.sending[nodeID] = l
	}
	return l
}

// attempt tries to deliver a stored event once and records the outcome.
// Callers hold the peer's lock.
func (a *Agent) attempt(ctx context.Context, d stored, p peerRow) outcome {
	out := a.deliver(ctx, &d, p)
	out.eventID = d.EventID
	if err := a.store.settle(context.WithoutCancel(ctx), d.Seq, out.status, out.reason); err != nil {
		a.log.Error("agent: recording a delivery", "err", err)
	}
	return out
}

func (a *Agent) deliver(ctx context.Context, d *stored, p peerRow) outcome {
	online, ok := a.isOnline(p.NodeID)
	if !ok {
		return outcome{status: Queued, reason: p.NodeName + " is offline; the event is delivered when it comes back"}
	}
	if d.Raw == "" {
		key, refusal := a.keyFor(ctx, p)
		switch {
		case refusal != "":
			return outcome{status: Failed, reason: refusal}
		case key == "":
			return outcome{status: Queued, reason: p.NodeName + " did not say its identity key; retrying"}
		}
		if err := a.signDraft(d, key); err != nil {
			return outcome{Failed, err.Error(), ""}
		}
		if err := a.store.sign(ctx, d.Seq, d.EventID, d.Raw); err != nil {
			return outcome{status: Queued, reason: "storing the signed event: " + err.Error()}
		}
	}
	code, msg, err := a.call(ctx, online, pathEvents, []byte(d.Raw), &deliveryReply{})
	switch {
	case err != nil:
		return outcome{status: Queued, reason: fmt.Sprintf("%s did not answer (%v); retrying", p.NodeName, err)}
	case code == http.StatusOK:
		return outcome{status: Delivered}
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable, code == http.StatusNotFound:
		return outcome{status: Queued, reason: fmt.Sprintf("%s cannot take it now (%s); retrying", p.NodeName, msg)}
	}
	return outcome{status: Failed, reason: fmt.Sprintf("%s refused the event: %s", p.NodeName, msg)}
}

// call sends a JSON body to a peer's agent (POST), or asks it (GET) when
// body is nil. A status other than 200 comes back with the peer's error
// message.
func (a *Agent) call(ctx context.Context, p api.Peer, path string, body []byte, out any) (int, string, error) {
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url(p, path), bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return resp.StatusCode, e.Error, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 0, "", fmt.Errorf("bad answer from %s: %w", p.NodeName, err)
	}
	return resp.StatusCode, "", nil
}

// keyFor returns the identity key to address a peer with: the pinned or
// already learned one, else the one the peer says, if the coordination
// server's pin vouches for it. Without one, refusal is the peer's reason
// when it refused to say (empty when it could not be asked).
func (a *Agent) keyFor(ctx context.Context, p peerRow) (key, refusal string) {
	if k := trustedKey(p); k != "" {
		return k, ""
	}
	online, ok := a.isOnline(p.NodeID)
	if !ok || p.NodeKey == "" {
		return "", ""
	}
	var id identityReply
	code, msg, err := a.call(ctx, online, pathIdentity, nil, &id)
	switch {
	case err != nil:
		return "", ""
	case code != http.StatusOK:
		return "", fmt.Sprintf("%s refused: %s", p.NodeName, msg)
	case !keyHasPin(id.IdentityKey, online.NodeKey):
		a.log.Warn("agent: a peer's identity key does not match the server's pin", "node", p.NodeName, "key", id.IdentityKey)
		return "", fmt.Sprintf("%s's identity key is not the one the coordination server knows for it", p.NodeName)
	}
	a.store.setPeerField(ctx, p.NodeID, "identity_key", id.IdentityKey)
	return id.IdentityKey, ""
}

// runOutbox delivers queued events until ctx ends: at once for a peer
// that came online or was sent a new event, else with a backoff per peer
// (1 s, doubling up to retryEvery) while it does not answer.
func (a *Agent) runOutbox(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	due := map[string]time.Time{}         // by node_id: when to try it next
	backoff := map[string]time.Duration{} // by node_id
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
			clear(due)
			clear(backoff)
		}
		now := a.opts.Now()
		if now.Sub(swept) > time.Minute {
			a.expireQueued(ctx, now)
			a.prune(ctx)
			swept = now
		}
		for _, nodeID := range a.waitingPeers(ctx) {
			if now.Before(due[nodeID]) {
				continue
			}
			if a.flush(ctx, nodeID) {
				delete(due, nodeID)
				delete(backoff, nodeID)
				continue
			}
			backoff[nodeID] = min(max(2*backoff[nodeID], time.Second), retryEvery)
			due[nodeID] = now.Add(backoff[nodeID])
		}
	}
}

// waitingPeers are the online peers with queued events.
func (a *Agent) waitingPeers(ctx context.Context) []string {
	ids, err := a.store.queuedPeers(ctx)
	if err != nil {
		a.log.Warn("agent: reading the outbox", "err", err)
	}
	online := ids[:0]
	for _, id := range ids {
		if _, ok := a.isOnline(id); ok {
			online = append(online, id)
		}
	}
	return online
}

// flush delivers a peer's queued events in order, stopping at the first
// that stays queued; it reports whether none is left.
func (a *Agent) flush(ctx context.Context, nodeID string) bool {
	p, err := a.store.peer(ctx, nodeID)
	if err != nil {
		return false
	}
	// The list is read under the lock: read before, it could hold an
	// event a Send was delivering meanwhile, which would go twice.
	lock := a.peerLock(nodeID)
	lock.Lock()
	defer lock.Unlock()
	queued, err := a.store.queued(ctx, nodeID)
	if err != nil {
		a.log.Warn("agent: reading the outbox", "err", err)
		return false
	}
	for _, d := range queued {
		out := a.attempt(ctx, d, p)
		if out.status == Queued {
			return false
		}
		a.log.Info("agent: queued event settled", "peer", p.NodeName, "verdict", out.status, "event_id", out.eventID, "reason", out.reason)
	}
	return true
}

// Keep is how many events of each direction the store keeps (queued ones
// are always kept): older ones are pruned every minute.
const Keep = 10_000

func (a *Agent) prune(ctx context.Context) {
	for _, dir := range []string{"in", "out"} {
		if err := a.store.prune(ctx, dir, Keep); err != nil {
			a.log.Warn("agent: pruning old events", "err", err)
		}
	}
}

// expireQueued fails the events that waited longer than queueFor.
func (a *Agent) expireQueued(ctx context.Context, now time.Time) {
	n, err := a.store.expire(ctx, now.Add(-queueFor), fmt.Sprintf("the peer was not reachable for %v", queueFor))
	if err != nil {
		a.log.Warn("agent: expiring queued events", "err", err)
	} else if n > 0 {
		a.log.Info("agent: queued events expired", "count", n)
	}
}
