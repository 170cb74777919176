package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/event"
)

func TestSendBody(t *testing.T) {
	tests := []struct {
		arg, stdin string
		json       bool
		want, err  string
	}{
		{arg: "hello", want: `{"text":"hello"}`},
		{arg: "-", stdin: "from stdin\n", want: `{"text":"from stdin"}`},
		{arg: `{"a":1}`, json: true, want: `{"a":1}`},
		{arg: "-", stdin: "[1, 2]\n", json: true, want: "[1, 2]\n"},
		{arg: "{", json: true, err: "not valid JSON"},
	}
	for _, tt := range tests {
		got, err := sendBody(tt.arg, strings.NewReader(tt.stdin), tt.json)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("sendBody(%q, json %t) = %s, %v; want an error about %q", tt.arg, tt.json, got, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("sendBody(%q, json %t) = %s, %v; want %s", tt.arg, tt.json, got, err, tt.want)
		}
	}
}

func TestReadEvent(t *testing.T) {
	entry := `{"seq":3,"event":{"from":"ed25519:x","kind":"message"}}`
	got, err := readEvent("-", strings.NewReader(entry))
	if err != nil || string(got) != `{"from":"ed25519:x","kind":"message"}` {
		t.Errorf("readEvent of a tail entry = %s, %v; want the event inside", got, err)
	}
	if got, _ := readEvent("-", strings.NewReader(`{"from":"ed25519:x"}`)); string(got) != `{"from":"ed25519:x"}` {
		t.Errorf("readEvent of an event = %s", got)
	}
	if _, err := readEvent("-", strings.NewReader("not json")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("readEvent of garbage: %v", err)
	}
	if _, err := readEvent("/nonexistent/event.json", nil); err == nil {
		t.Error("readEvent of a missing file: no error")
	}
}

func TestBodyText(t *testing.T) {
	for body, want := range map[string]string{
		`{"text":"hi"}`:        "hi",
		`{"text":"hi","to":1}`: `{"text":"hi","to":1}`,
		`[1,2]`:                `[1,2]`,
		`"just a string"`:      `"just a string"`,
	} {
		if got := bodyText([]byte(body)); got != want {
			t.Errorf("bodyText(%s) = %s, want %s", body, got, want)
		}
	}
}

// TestSubcommandStateDir: --state-dir before a subcommand counts (a
// subcommand sees only its own flags).
func TestSubcommandStateDir(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"pair", "--state-dir", dir, "join", "1-amber-willow"},
		{"pair", "join", "--state-dir", dir, "1-amber-willow"},
	} {
		var out, errOut strings.Builder
		err := newApp(&out, &errOut).Run(t.Context(), args)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("%v: %v; want the daemon looked for in %s", args, err, dir)
		}
	}
}

// TestVerifyWithoutDaemon: wire verify checks a signature with no daemon
// running; only whose key it is needs one.
func TestVerifyWithoutDaemon(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	e, err := event.New(key, key.Public().(ed25519.PublicKey), "message", json.RawMessage(`{"text":"hi"}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(e)
	dir := t.TempDir()
	file := filepath.Join(dir, "event.json")
	os.WriteFile(file, good, 0o644)
	var out, errOut strings.Builder
	if err := newApp(&out, &errOut).Run(t.Context(), []string{"verify", "--state-dir", dir, file}); err != nil || !strings.Contains(out.String(), "valid: event "+e.EventID) {
		t.Errorf("wire verify of a good event: %v\n%s", err, out.String())
	}
	os.WriteFile(file, []byte(strings.Replace(string(good), "hi", "ho", 1)), 0o644)
	out.Reset()
	if err := newApp(&out, &errOut).Run(t.Context(), []string{"verify", "--state-dir", dir, file}); err == nil || !strings.Contains(err.Error(), "invalid event") {
		t.Errorf("wire verify of a tampered event: %v\n%s", err, out.String())
	}
}
