package node

import (
	"strings"
	"testing"
)

func TestInit(t *testing.T) {
	dir := t.TempDir()
	first, err := Init(dir, "")
	if err != nil || !first.Created || !strings.HasPrefix(first.IdentityKey, "ed25519:") || first.Fingerprint == "" {
		t.Fatalf("first Init = %+v, %v", first, err)
	}
	again, err := Init(dir, "")
	if err != nil || again.Created || again.IdentityKey != first.IdentityKey {
		t.Fatalf("second Init = %+v, %v; want the same key, not created", again, err)
	}
	cfg := Config{NodeID: "id", NodeName: "laptop", ListenPort: 51820, ServerURL: "https://wire.example:8787", Interface: "wire0",
		VPNIP: "10.99.0.2", Subnet: "10.99.0.0/16"}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	if res, err := Init(dir, "LAPTOP"); err != nil || res.NodeName != "laptop" || res.IdentityKey != first.IdentityKey {
		t.Errorf("Init with its own name = %+v, %v", res, err)
	}
	_, err = Init(dir, "desktop")
	if err == nil || !strings.Contains(err.Error(), "never renames or re-keys") || !strings.Contains(err.Error(), "wire up --name desktop") {
		t.Errorf("Init with another name = %v; want a refusal saying how to rename or rotate", err)
	}
	if res, _ := Init(dir, ""); res.IdentityKey != first.IdentityKey {
		t.Error("the identity changed")
	}
}
