package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func testPin(t *testing.T) Pin {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := SelfSigned(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	return PinOf(cert.Leaf)
}

func TestJoinKeyRoundTrip(t *testing.T) {
	k := NewJoinKey(testPin(t))
	s := k.String()
	if !strings.HasPrefix(s, "wire1-") || strings.Count(s, "-") != 3 {
		t.Fatalf("key %q is not wire1-<id>-<secret>-<pin>", s)
	}
	got, err := ParseJoinKey("  " + strings.ToUpper(s) + "\n")
	if err != nil {
		t.Fatalf("ParseJoinKey: %v", err)
	}
	if got != k {
		t.Errorf("round trip: %+v, want %+v", got, k)
	}
	if !SecretMatches(k.Secret, SecretHash(k.Secret)) || SecretMatches(k.Secret+"x", SecretHash(k.Secret)) {
		t.Error("SecretMatches is wrong")
	}
}

func TestParseJoinKeyErrors(t *testing.T) {
	good := NewJoinKey(testPin(t))
	pin := good.Pin.String()
	for _, s := range []string{
		"", "letmein", "wire2-" + good.ID + "-" + good.Secret + "-" + pin,
		"wire1-" + good.ID + "-" + good.Secret, // no pin
		"wire1-" + good.ID + "-" + good.Secret + "-" + pin[:40],
		"wire1-short-" + good.Secret + "-" + pin,
		"wire1-" + good.ID + "-" + good.Secret[:31] + "1-" + pin, // '1' is not base32
	} {
		if _, err := ParseJoinKey(s); !errors.Is(err, ErrBadJoinKey) {
			t.Errorf("ParseJoinKey(%q) = %v, want ErrBadJoinKey", s, err)
		}
	}
}

func TestPinCurlForm(t *testing.T) {
	p := testPin(t)
	if c := p.Curl(); !strings.HasPrefix(c, "sha256//") || len(c) != len("sha256//")+44 {
		t.Errorf("Curl() = %q", c)
	}
	back, err := ParsePin(p.String())
	if err != nil || back != p {
		t.Errorf("ParsePin round trip: %v", err)
	}
}

func TestParseServerURL(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://vpn.example.com:8787": true, "http://192.0.2.1:8787/": true,
		"vpn.example.com:8787": false, "ftp://x": false, "https://x/path": false, "https://": false,
	} {
		if _, err := ParseServerURL(s); (err == nil) != ok {
			t.Errorf("ParseServerURL(%q) error = %v, want ok=%v", s, err, ok)
		}
	}
}
