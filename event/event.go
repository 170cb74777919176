// Package event is the format of the signed messages that wire nodes send
// each other: canonical JSON, an id that is its hash, and an Ed25519
// signature by the sender's identity key.
package event

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
)

// MaxSize bounds an event as JSON. Larger ones are refused on both sides.
const MaxSize = 256 << 10

// KeyPrefix starts every identity key in an event.
const KeyPrefix = "ed25519:"

// TimeFormat is how timestamps are written: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// An Event is one signed message from one node's identity key to
// another's. Body is any JSON value.
type Event struct {
	From      string          `json:"from"`
	To        string          `json:"to"`
	Kind      string          `json:"kind"`
	Body      json.RawMessage `json:"body"`
	Timestamp string          `json:"timestamp"`
	// Nonce makes two events of the same content and millisecond two
	// events, not one id (which receivers take as a duplicate).
	Nonce     string `json:"nonce"`
	EventID   string `json:"event_id"`
	Signature string `json:"signature"`
}

// Errors of Verify, for callers that branch on them.
var (
	ErrTooLarge  = fmt.Errorf("event is larger than %d KiB", MaxSize>>10)
	ErrEventID   = errors.New("event_id is not the SHA-256 of the event's canonical form: the event was changed after it was made")
	ErrSignature = errors.New("signature does not verify with the key in from: the event was changed or not signed by that key")
)

var (
	kindRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,63}$`)
	nonceRE = regexp.MustCompile(`^[0-9a-f]{16,64}$`)
)

// New signs an event from key to the identity key to.
func New(key ed25519.PrivateKey, to ed25519.PublicKey, kind string, body json.RawMessage, now time.Time) (Event, error) {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	return newEvent(key, to, kind, body, now, hex.EncodeToString(nonce))
}

func newEvent(key ed25519.PrivateKey, to ed25519.PublicKey, kind string, body json.RawMessage, now time.Time, nonce string) (Event, error) {
	e := Event{
		From: EncodeKey(key.Public().(ed25519.PublicKey)), To: EncodeKey(to), Kind: kind, Body: body,
		Timestamp: now.UTC().Format(TimeFormat), Nonce: nonce,
	}
	if err := e.checkFields(); err != nil {
		return Event{}, err
	}
	canon, err := e.Canonical()
	if err != nil {
		return Event{}, err
	}
	e.EventID = id(canon)
	e.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, canon))
	if b, _ := json.Marshal(e); len(b) > MaxSize {
		return Event{}, ErrTooLarge
	}
	return e, nil
}

// CheckDraft checks what a sender chooses (kind and body) before there is
// an event to sign: the errors New would give for them.
func CheckDraft(kind string, body json.RawMessage) error {
	if !kindRE.MatchString(kind) {
		return fmt.Errorf("kind %.70q: want 1 to 64 of a-z 0-9 . _ / - (e.g. message)", kind)
	}
	if len(body) == 0 || !json.Valid(body) {
		return errors.New("body: not a JSON value")
	}
	if len(body) > MaxSize-envelope {
		return ErrTooLarge
	}
	return nil
}

// envelope bounds what an event adds to its body: keys, id, signature.
const envelope = 512

// Canonical is what the id hashes and the signature signs: the event
// without event_id and signature, as RFC 8785 canonical JSON (keys sorted,
// no insignificant whitespace, numbers and strings in one spelling).
func (e Event) Canonical() ([]byte, error) {
	b, err := json.Marshal(struct {
		From      string          `json:"from"`
		To        string          `json:"to"`
		Kind      string          `json:"kind"`
		Body      json.RawMessage `json:"body"`
		Timestamp string          `json:"timestamp"`
		Nonce     string          `json:"nonce"`
	}{e.From, e.To, e.Kind, e.Body, e.Timestamp, e.Nonce})
	if err != nil {
		return nil, fmt.Errorf("event body is not JSON: %w", err)
	}
	return jcs.Transform(b)
}

func id(canon []byte) string {
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// Parse decodes an event and checks its shape (not its signature).
func Parse(b []byte) (Event, error) {
	if len(b) > MaxSize {
		return Event{}, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return Event{}, fmt.Errorf("not an event: %w", err)
	}
	if dec.More() {
		return Event{}, errors.New("not an event: more JSON after it")
	}
	return e, e.checkFields()
}

func (e Event) checkFields() error {
	if _, err := DecodeKey(e.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if _, err := DecodeKey(e.To); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	if err := CheckDraft(e.Kind, e.Body); err != nil {
		return err
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if !nonceRE.MatchString(e.Nonce) {
		return errors.New("nonce: want 16 to 64 lowercase hex digits")
	}
	return nil
}

// Verify checks the event's id and its signature by the key in From. It
// says nothing of whether that key is the one its holder claims to be:
// that is for the caller, who knows the peers.
func (e Event) Verify() error {
	if err := e.checkFields(); err != nil {
		return err
	}
	canon, err := e.Canonical()
	if err != nil {
		return err
	}
	if e.EventID != id(canon) {
		return ErrEventID
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return ErrSignature
	}
	from, _ := DecodeKey(e.From)
	if !ed25519.Verify(from, canon, sig) {
		return ErrSignature
	}
	return nil
}

// Time is the event's timestamp.
func (e Event) Time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, e.Timestamp)
	return t
}

// EncodeKey writes an identity key as events carry it.
func EncodeKey(k ed25519.PublicKey) string {
	return KeyPrefix + base64.StdEncoding.EncodeToString(k)
}

// DecodeKey parses what EncodeKey writes.
func DecodeKey(s string) (ed25519.PublicKey, error) {
	raw, ok := strings.CutPrefix(s, KeyPrefix)
	b, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%.60q is not an identity key (%s and the base64 of 32 bytes)", s, KeyPrefix)
	}
	return ed25519.PublicKey(b), nil
}
