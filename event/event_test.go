package event

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	alice = ed25519.NewKeyFromSeed(make([]byte, 32))
	bob   = ed25519.NewKeyFromSeed([]byte("bob-bob-bob-bob-bob-bob-bob-bob-"))
	when  = time.Date(2026, 12, 1, 15, 4, 5, 678_000_000, time.UTC)
)

func bobKey() ed25519.PublicKey { return bob.Public().(ed25519.PublicKey) }

// TestCanonicalForm pins the format: what is hashed and signed is exactly
// this string, so another implementation can check its own against it.
func TestCanonicalForm(t *testing.T) {
	e, err := newEvent(alice, bobKey(), "message", json.RawMessage(`{ "z": 1.50, "a": ["x", "\u00e9"] }`), when, "00112233445566778899aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := e.Canonical()
	want := `{"body":{"a":["x","é"],"z":1.5},"from":"` + e.From + `","kind":"message","nonce":"00112233445566778899aabbccddeeff","timestamp":"2026-12-01T15:04:05.678Z","to":"` + e.To + `"}`
	if string(canon) != want {
		t.Errorf("canonical form:\n got %s\nwant %s", canon, want)
	}
	// Known answers, checked with sha256sum on the string above; Ed25519
	// signatures are deterministic.
	if want := "8baf9d989bcee25fa59ef09ebcc5b7286bf7591837efeaf805238b51e5e4b82c"; e.EventID != want {
		t.Errorf("event_id = %s, want %s", e.EventID, want)
	}
	if want := "Xer5v2kSJgYZSBizd0jaHworn91s5FQHGuH1FVo2Ctw8wEU+b3CuTAvCugRX8HaOEpQVV4/2QfEc8Q1QqE3TCQ=="; e.Signature != want {
		t.Errorf("signature = %s, want %s", e.Signature, want)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestSameMeaningSameID: a body that differs only in spelling (key order,
// whitespace, number form) hashes to the same id, so a relay that
// re-encodes JSON does not break signatures.
func TestSameMeaningSameID(t *testing.T) {
	a, _ := newEvent(alice, bobKey(), "message", json.RawMessage(`{"b":1,"a":2e0}`), when, "0123456789abcdef")
	b, _ := newEvent(alice, bobKey(), "message", json.RawMessage("{\n \"a\": 2, \"b\": 1.0}"), when, "0123456789abcdef")
	if a.EventID != b.EventID {
		t.Errorf("ids differ: %s, %s", a.EventID, b.EventID)
	}
}

// TestSameContentTwoEvents: two sends of the same body in the same
// millisecond are two events (a receiver would drop one as a duplicate).
func TestSameContentTwoEvents(t *testing.T) {
	a, _ := New(alice, bobKey(), "message", json.RawMessage(`"ok"`), when)
	b, _ := New(alice, bobKey(), "message", json.RawMessage(`"ok"`), when)
	if a.EventID == b.EventID {
		t.Errorf("two events share the id %s", a.EventID)
	}
}

func TestTamperedEventsFail(t *testing.T) {
	e, err := New(alice, bobKey(), "message", json.RawMessage(`"hello"`), when)
	if err != nil {
		t.Fatal(err)
	}
	mallory := ed25519.NewKeyFromSeed([]byte("mallory-mallory-mallory-mallory-"))
	forged, _ := New(mallory, bobKey(), "message", json.RawMessage(`"hello"`), when)
	tests := []struct {
		name   string
		change func(*Event)
		want   error
	}{
		{"body", func(e *Event) { e.Body = json.RawMessage(`"hullo"`) }, ErrEventID},
		{"kind", func(e *Event) { e.Kind = "claim" }, ErrEventID},
		{"to", func(e *Event) { e.To = EncodeKey(alice.Public().(ed25519.PublicKey)) }, ErrEventID},
		{"timestamp", func(e *Event) { e.Timestamp = "2026-12-01T15:04:05.679Z" }, ErrEventID},
		{"nonce", func(e *Event) { e.Nonce = "ffffffffffffffff" }, ErrEventID},
		{"from, with the id recomputed", func(e *Event) {
			e.From = forged.From
			c, _ := e.Canonical()
			e.EventID = id(c)
		}, ErrSignature},
		{"body and id both changed", func(e *Event) {
			e.Body = json.RawMessage(`"hullo"`)
			c, _ := e.Canonical()
			e.EventID = id(c)
		}, ErrSignature},
		{"signature of another event", func(e *Event) { e.Signature = forged.Signature }, ErrSignature},
		{"signature not base64", func(e *Event) { e.Signature = "!!" }, ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e
			tt.change(&e)
			if err := e.Verify(); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	e, _ := New(alice, bobKey(), "note/todo", json.RawMessage(`[1,2]`), when)
	good, _ := json.Marshal(e)
	got, err := Parse(good)
	if err != nil || got.Verify() != nil {
		t.Fatalf("Parse(%s) = %v, %v", good, err, got.Verify())
	}
	bad := []struct{ name, json, want string }{
		{"not JSON", `{`, "not an event"},
		{"extra field", strings.Replace(string(good), `"kind"`, `"x":1,"kind"`, 1), "unknown field"},
		{"trailing JSON", string(good) + `{}`, "more JSON"},
		{"bad from", strings.Replace(string(good), `"from":"ed25519:`, `"from":"rsa:`, 1), "from:"},
		{"bad kind", strings.Replace(string(good), `"note/todo"`, `"Note"`, 1), "kind"},
		{"no body", strings.Replace(string(good), `"body":[1,2],`, ``, 1), "body"},
		{"bad time", strings.Replace(string(good), e.Timestamp, "yesterday", 1), "timestamp"},
		{"bad nonce", strings.Replace(string(good), e.Nonce, "XYZ", 1), "nonce"},
	}
	for _, tt := range bad {
		if _, err := Parse([]byte(tt.json)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want an error about %q", tt.name, err, tt.want)
		}
	}
}

func TestTooLarge(t *testing.T) {
	body, _ := json.Marshal(strings.Repeat("x", MaxSize))
	if _, err := New(alice, bobKey(), "message", body, when); !errors.Is(err, ErrTooLarge) {
		t.Errorf("New with a %d-byte body = %v, want ErrTooLarge", len(body), err)
	}
	if _, err := Parse(make([]byte, MaxSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse of %d bytes = %v, want ErrTooLarge", MaxSize+1, err)
	}
	body, _ = json.Marshal(strings.Repeat("x", MaxSize-1024))
	if _, err := New(alice, bobKey(), "message", body, when); err != nil {
		t.Errorf("New just under the limit: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	e, _ := New(alice, bobKey(), "message", json.RawMessage(`{"text":"hi"}`), when)
	good, _ := json.Marshal(e)
	f.Add(good)
	f.Add([]byte(`{"from":"ed25519:AAAA","body":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		if e.Verify() == nil {
			// Anything that verifies must still verify once re-encoded.
			again, _ := json.Marshal(e)
			e2, err := Parse(again)
			if err != nil || e2.Verify() != nil {
				t.Fatalf("verified event does not survive re-encoding: %s", again)
			}
		}
	})
}
