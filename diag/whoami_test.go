package diag

import "testing"

func TestFingerprint(t *testing.T) {
	// sha256 of 32 zero bytes is 66687aad...
	got, err := Fingerprint("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil || got != "66687aad" {
		t.Errorf("Fingerprint(zero key) = %q, %v; want 66687aad", got, err)
	}
	if _, err := Fingerprint("not a key"); err == nil {
		t.Error("Fingerprint(not a key): no error")
	}
}
