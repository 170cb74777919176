package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

// Pairing makes a peer verified: both people compare six digits that
// commit to both identity keys, and each side pins the other's key only
// once both have confirmed. The protocol is a hash commitment, as in
// ZRTP and Bluetooth's numeric comparison; see the README's threat model.
//
//	A -> B  offer   {session_id, code, key_a, commit = H(session_id, key_a, nonce_a)}
//	B -> A  join    {session_id, key_b, nonce_b}        (B holds the commitment)
//	A -> B  reveal  {nonce_a}                           (the answer to join)
//	both    SAS = 6 digits of HMAC-SHA256(nonce_a || nonce_b, session_id || key_a || key_b)
//	each    confirm {signature over the transcript}, answered with an ack
//	        and the other's confirm, if it has confirmed.
//
// A party in the middle must commit to its nonce towards B before it
// sees B's, and show A its nonce before A reveals one, so it can make the
// two sides' digits match only by guessing: one chance in a million per
// attempt. The code phrase only finds the session; nothing is derived
// from it, so there is nothing in it to guess offline.

// Pairing states.
const (
	PairOffered   = "offered"   // initiator: waiting for the other side to join
	PairSASReady  = "sas_ready" // both sides can show the digits
	PairConfirmed = "confirmed" // this side's person typed the right digits; waiting for the other side
	PairDone      = "done"      // both sides confirmed; the peer's key is pinned
	PairAborted   = "aborted"
	PairExpired   = "expired"
)

// PairTTL is how long a pairing session lives.
const PairTTL = 10 * time.Minute

const pathPair = "/v1/pair"

// PairStatus is what wire_pair_* return.
type PairStatus struct {
	SessionID string `json:"session_id"`
	Peer      string `json:"peer"`
	Role      string `json:"role" jsonschema:"initiator or joiner"`
	State     string `json:"state" jsonschema:"offered, sas_ready, confirmed, done, aborted or expired"`
	Code      string `json:"code,omitempty" jsonschema:"initiator only: the code phrase to give the other side's person out of band"`
	SAS       string `json:"sas,omitempty" jsonschema:"the six digits to read aloud to the other side, once sas_ready"`
	Reason    string `json:"reason,omitempty"`
	ExpiresAt string `json:"expires_at"`
	Next      string `json:"next" jsonschema:"what to do now"`
}

// session is one pairing, as one side holds it.
type session struct {
	id, code, role string
	nodeID, peer   string // the other side
	keyA, keyB     string // identity keys of initiator and joiner
	nonceA, nonceB []byte
	commit         []byte
	state, reason  string
	expires        time.Time
	// confirmed says this side's person typed the right digits; theirs
	// is the other side's signed confirm; acked says the other side
	// holds ours.
	confirmed, acked bool
	theirs           []byte
}

// pairings are the sessions in progress, by id.
type pairings struct {
	a  *Agent
	mu sync.Mutex
	m  map[string]*session
}

func newPairings(a *Agent) *pairings { return &pairings{a: a, m: map[string]*session{}} }

// pairMsg is the body of POST /v1/pair between agents.
type pairMsg struct {
	Type      string `json:"type"` // offer, join, confirm or abort
	SessionID string `json:"session_id"`
	Code      string `json:"code,omitempty"`
	Key       string `json:"key,omitempty"`
	Commit    []byte `json:"commit,omitempty"`
	Nonce     []byte `json:"nonce,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// pairReply answers a pairMsg.
type pairReply struct {
	Nonce   []byte `json:"nonce,omitempty"`   // to join: the reveal
	Confirm []byte `json:"confirm,omitempty"` // to confirm: the receiver's, if it has confirmed
	Acked   bool   `json:"acked,omitempty"`
}

var errNoSession = errors.New("no such pairing session (it may have expired)")

func commitment(id, key string, nonce []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "wire-pair-v1 commit\x00%s\x00%s\x00", id, key)
	h.Write(nonce)
	return h.Sum(nil)
}

// sas is the six digits: they depend on both keys and both nonces.
func (s *session) sas() string {
	m := hmac.New(sha256.New, append(append([]byte{}, s.nonceA...), s.nonceB...))
	fmt.Fprintf(m, "wire-pair-v1 sas\x00%s\x00%s\x00%s", s.id, s.keyA, s.keyB)
	n := binary.BigEndian.Uint64(m.Sum(nil)[:8]) % 1_000_000
	return fmt.Sprintf("%06d", n)
}

// transcript is what a confirm signs.
func (s *session) transcript(role string) []byte {
	return fmt.Appendf(nil, "wire-pair-v1 confirm\x00%s\x00%s\x00%s\x00%s\x00%x\x00%x", role, s.id, s.keyA, s.keyB, s.nonceA, s.nonceB)
}

func (s *session) peerKey() string {
	if s.role == "initiator" {
		return s.keyB
	}
	return s.keyA
}

func (s *session) otherRole() string {
	if s.role == "initiator" {
		return "joiner"
	}
	return "initiator"
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Initiate opens a pairing session with a peer and offers it.
func (a *Agent) Initiate(ctx context.Context, who string) (PairStatus, error) {
	p, err := a.find(ctx, who)
	if err != nil {
		return PairStatus{}, err
	}
	online, ok := a.isOnline(p.NodeID)
	if !ok {
		return PairStatus{}, fmt.Errorf("%s is offline: pairing needs both nodes online", p.NodeName)
	}
	s := &session{
		id: hex.EncodeToString(random(16)), code: newCode(), role: "initiator", nodeID: p.NodeID, peer: p.NodeName,
		keyA: a.self, nonceA: random(32), state: PairOffered, expires: a.opts.Now().Add(PairTTL),
	}
	s.commit = commitment(s.id, s.keyA, s.nonceA)
	if a.pairing.count() >= maxSessions {
		return PairStatus{}, fmt.Errorf("%d pairing sessions are open already; finish some or let them expire", maxSessions)
	}
	msg := pairMsg{Type: "offer", SessionID: s.id, Code: s.code, Key: s.keyA, Commit: s.commit}
	if err := a.pairPost(ctx, online, msg, &pairReply{}); err != nil {
		return PairStatus{}, fmt.Errorf("offering to pair with %s: %w", p.NodeName, err)
	}
	a.pairing.put(s)
	return a.pairing.status(s), nil
}

// Join accepts a code phrase offered by a peer: both sides reach sas_ready.
func (a *Agent) Join(ctx context.Context, code string) (PairStatus, error) {
	s := a.pairing.byCode(strings.ToLower(strings.TrimSpace(code)))
	if s == nil {
		return PairStatus{}, errors.New("no pairing offer with that code has reached this node: check the code, and that the other side ran wire pair with this node's name")
	}
	online, ok := a.isOnline(s.nodeID)
	if !ok {
		return PairStatus{}, fmt.Errorf("%s is offline", s.peer)
	}
	a.pairing.mu.Lock()
	s.nonceB = random(32)
	msg := pairMsg{Type: "join", SessionID: s.id, Key: s.keyB, Nonce: s.nonceB}
	a.pairing.mu.Unlock()
	var rep pairReply
	if err := a.pairPost(ctx, online, msg, &rep); err != nil {
		return PairStatus{}, fmt.Errorf("joining %s's pairing: %w", s.peer, err)
	}
	a.pairing.mu.Lock()
	defer a.pairing.mu.Unlock()
	if !hmac.Equal(commitment(s.id, s.keyA, rep.Nonce), s.commit) {
		s.state, s.reason = PairAborted, "the initiator's nonce does not match its commitment: someone interfered"
		return a.pairing.statusLocked(s), errors.New(s.reason)
	}
	s.nonceA, s.state = rep.Nonce, PairSASReady
	return a.pairing.statusLocked(s), nil
}

// Check returns a session's state.
func (a *Agent) Check(id string) (PairStatus, error) {
	a.pairing.mu.Lock()
	defer a.pairing.mu.Unlock()
	s, ok := a.pairing.m[id]
	if !ok {
		return PairStatus{}, errNoSession
	}
	return a.pairing.statusLocked(s), nil
}

// Confirm takes the digits the person typed, heard from the other side.
// The wrong digits abort the session on both sides.
func (a *Agent) Confirm(ctx context.Context, id, digits string) (PairStatus, error) {
	ps := a.pairing
	ps.mu.Lock()
	s, ok := ps.m[id]
	if !ok {
		ps.mu.Unlock()
		return PairStatus{}, errNoSession
	}
	if s.state != PairSASReady && s.state != PairConfirmed {
		st := ps.statusLocked(s)
		ps.mu.Unlock()
		return st, fmt.Errorf("the session is %s, not ready for digits", st.State)
	}
	typed := strings.Join(strings.Fields(digits), "")
	if subtle.ConstantTimeCompare([]byte(typed), []byte(s.sas())) != 1 {
		s.state, s.reason = PairAborted, "the digits typed are not this side's: the pairing is aborted on both sides, and nothing is pinned"
		ps.mu.Unlock()
		a.tellAbort(ctx, s)
		return a.Check(id)
	}
	s.confirmed = true
	if s.state == PairSASReady {
		s.state = PairConfirmed
	}
	ps.mu.Unlock()
	a.sendConfirm(ctx, s)
	return a.Check(id)
}

// sendConfirm gives the other side this side's signed confirm until it
// acknowledges it; the answer may carry the other side's.
func (a *Agent) sendConfirm(ctx context.Context, s *session) {
	online, ok := a.isOnline(s.nodeID)
	if !ok {
		return
	}
	a.pairing.mu.Lock()
	sig := ed25519.Sign(a.opts.Key, s.transcript(s.role))
	a.pairing.mu.Unlock()
	var rep pairReply
	if err := a.pairPost(ctx, online, pairMsg{Type: "confirm", SessionID: s.id, Signature: sig}, &rep); err != nil {
		a.log.Info("agent: pairing confirm not delivered; retrying", "peer", s.peer, "err", err)
		return
	}
	a.pairing.mu.Lock()
	defer a.pairing.mu.Unlock()
	s.acked = rep.Acked
	if rep.Confirm != nil {
		a.pairing.takeConfirm(s, rep.Confirm)
	}
	a.pairing.finish(ctx, s)
}

func (a *Agent) tellAbort(ctx context.Context, s *session) {
	if online, ok := a.isOnline(s.nodeID); ok {
		a.pairPost(ctx, online, pairMsg{Type: "abort", SessionID: s.id, Reason: "the other side's person typed digits that do not match"}, &pairReply{})
	}
}

func (a *Agent) pairPost(ctx context.Context, p api.Peer, msg pairMsg, out *pairReply) error {
	b, _ := json.Marshal(msg)
	code, refusal, err := a.call(ctx, p, pathPair, b, out)
	if err == nil && code != http.StatusOK {
		err = errors.New(refusal)
	}
	return err
}

// takeConfirm checks and keeps the other side's confirm. Callers hold mu.
func (ps *pairings) takeConfirm(s *session, sig []byte) bool {
	key, err := event.DecodeKey(s.peerKey())
	if err != nil || !ed25519.Verify(key, s.transcript(s.otherRole()), sig) {
		return false
	}
	s.theirs = sig
	return true
}

// finish pins the peer's key once both sides have confirmed and the other
// side holds this side's confirm. Callers hold mu.
func (ps *pairings) finish(ctx context.Context, s *session) {
	if s.state != PairConfirmed || !s.confirmed || !s.acked || s.theirs == nil {
		return
	}
	if err := ps.a.store.pin(ctx, s.nodeID, s.peerKey(), ps.a.opts.Now()); err != nil {
		ps.a.log.Error("agent: pinning a paired key", "err", err)
		return
	}
	s.state = PairDone
	ps.a.log.Info("agent: paired; the peer's identity key is pinned", "peer", s.peer, "key", s.peerKey())
}

// handle answers another agent's pairing message.
func (ps *pairings) handle(w http.ResponseWriter, r *http.Request, p api.Peer) {
	var msg pairMsg
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&msg); err != nil {
		reply(w, http.StatusBadRequest, api.Error{Error: "not a pairing message"})
		return
	}
	if msg.Type == "offer" {
		ps.offered(w, r, p, msg)
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	s, ok := ps.m[msg.SessionID]
	if !ok || s.nodeID != p.NodeID || s.state == PairAborted || s.state == PairExpired {
		reply(w, http.StatusNotFound, api.Error{Error: errNoSession.Error()})
		return
	}
	var rep pairReply
	switch {
	case msg.Type == "join" && s.role == "initiator" && s.state == PairOffered:
		if _, err := event.DecodeKey(msg.Key); err != nil || len(msg.Nonce) != 32 {
			reply(w, http.StatusBadRequest, api.Error{Error: "bad join"})
			return
		}
		if p.NodeKey != "" && !keyHasPin(msg.Key, p.NodeKey) {
			reply(w, http.StatusForbidden, api.Error{Error: "the joining key is not the one the coordination server knows for the sender"})
			return
		}
		s.keyB, s.nonceB, s.state = msg.Key, msg.Nonce, PairSASReady
		rep.Nonce = s.nonceA
	case msg.Type == "confirm" && (s.state == PairSASReady || s.state == PairConfirmed || s.state == PairDone):
		if s.theirs == nil && !ps.takeConfirm(s, msg.Signature) {
			reply(w, http.StatusForbidden, api.Error{Error: "the confirm's signature does not verify"})
			return
		}
		rep.Acked = true
		if s.confirmed {
			rep.Confirm = ed25519.Sign(ps.a.opts.Key, s.transcript(s.role))
			s.acked = true // it confirmed after ours: it holds ours
		}
		ps.finish(r.Context(), s)
	case msg.Type == "abort":
		s.state, s.reason = PairAborted, "the other side aborted: "+msg.Reason
	default:
		reply(w, http.StatusConflict, api.Error{Error: fmt.Sprintf("a %s message does not fit a session that is %s", msg.Type, s.state)})
		return
	}
	reply(w, http.StatusOK, rep)
}

// offered keeps an offer until this side's person joins it.
func (ps *pairings) offered(w http.ResponseWriter, r *http.Request, p api.Peer, msg pairMsg) {
	row, err := ps.a.store.peer(r.Context(), p.NodeID)
	if err == nil && row.Blocked {
		err = errBlocked
	}
	if err == nil && row.NodeKey != "" && !keyHasPin(msg.Key, row.NodeKey) {
		err = errors.New("the offered key is not the one the coordination server knows for the sender")
	}
	if err != nil || len(msg.Commit) != sha256.Size || len(msg.SessionID) != 32 || !codeRE.MatchString(msg.Code) {
		if err == nil {
			err = errors.New("bad offer")
		}
		reply(w, http.StatusForbidden, api.Error{Error: err.Error()})
		return
	}
	s := &session{id: msg.SessionID, code: msg.Code, role: "joiner", nodeID: p.NodeID, peer: p.NodeName,
		keyA: msg.Key, keyB: ps.a.self, commit: msg.Commit, state: PairOffered, expires: ps.a.opts.Now().Add(PairTTL)}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if _, dup := ps.m[s.id]; dup || len(ps.m) >= maxSessions {
		reply(w, http.StatusConflict, api.Error{Error: "too many pairing sessions, or a repeated one"})
		return
	}
	ps.m[s.id] = s
	reply(w, http.StatusOK, pairReply{})
}

// maxSessions bounds the sessions a node holds, its own and offered.
const maxSessions = 64

func (ps *pairings) count() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.m)
}

func (ps *pairings) put(s *session) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.m[s.id] = s
}

func (ps *pairings) byCode(code string) *session {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, s := range ps.m {
		if s.role == "joiner" && s.code == code && s.state == PairOffered {
			return s
		}
	}
	return nil
}

func (ps *pairings) status(s *session) PairStatus {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.statusLocked(s)
}

func (ps *pairings) statusLocked(s *session) PairStatus {
	st := PairStatus{SessionID: s.id, Peer: s.peer, Role: s.role, State: s.state, Reason: s.reason,
		ExpiresAt: s.expires.UTC().Format(time.RFC3339)}
	switch s.state {
	case PairOffered:
		if s.role == "initiator" {
			st.Code = s.code
			st.Next = "give the code to the person at " + s.peer + " (by voice or another channel); they run wire pair join with it. Then check again."
		} else {
			st.Next = "join with the code the other person gives you"
		}
	case PairSASReady:
		st.SAS = s.sas()
		st.Next = "read these six digits to the person at " + s.peer + " and ask for theirs; have the person type the digits they HEAR into wire_pair_confirm. Never type them yourself."
	case PairConfirmed:
		st.SAS = s.sas()
		st.Next = "waiting for the person at " + s.peer + " to confirm; check again"
	case PairDone:
		st.Next = s.peer + " is verified: its identity key is pinned"
	default:
		st.Next = "start again with wire pair"
	}
	return st
}

// expire ends sessions past their time and retries unacknowledged
// confirms, until ctx ends.
func (ps *pairings) expire(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var retry []*session
		ps.mu.Lock()
		now := ps.a.opts.Now()
		for id, s := range ps.m {
			switch {
			case now.After(s.expires.Add(PairTTL)):
				delete(ps.m, id) // kept a while after expiry, for Check
			case now.After(s.expires) && s.state != PairDone && s.state != PairAborted:
				s.state, s.reason = PairExpired, "nobody finished the pairing within 10 minutes; nothing was pinned"
			case s.state == PairConfirmed && !s.acked:
				retry = append(retry, s)
			}
		}
		ps.mu.Unlock()
		for _, s := range retry {
			ps.a.sendConfirm(ctx, s)
		}
	}
}
