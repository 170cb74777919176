package diag

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/wire-mesh/wire/node"
)

// Identity is what whoami reports.
type Identity struct {
	NodeName    string `json:"node_name"`
	VPNIP       string `json:"vpn_ip"`
	WGPublicKey string `json:"wg_public_key"`
	Fingerprint string `json:"fingerprint" jsonschema:"the first 8 hex digits of the SHA-256 of the WireGuard public key"`
	ServerURL   string `json:"server_url"`
	IdentityKey string `json:"identity_key" jsonschema:"the ed25519 key that signs this node's messages"`
	// IdentityFingerprint is the key's pin.
	IdentityFingerprint string `json:"identity_fingerprint" jsonschema:"the SHA-256 pin of the identity key, as the coordination server knows the node"`
	Messaging           string `json:"messaging" jsonschema:"on, or why messaging is off"`
	Enrolled            bool   `json:"enrolled" jsonschema:"false once the server has said it does not know this node (its admin removed it) or that its enrolment expired"`
	Advice              string `json:"advice,omitempty" jsonschema:"what to do when the node is not enrolled"`
}

// Whoami reports who this node is, from its running daemon.
func Whoami(ctx context.Context, c *node.Client) (Identity, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return Identity{}, err
	}
	fp, err := Fingerprint(st.WGPublicKey)
	if err != nil {
		return Identity{}, err
	}
	return Identity{NodeName: st.NodeName, VPNIP: st.VPNIP, WGPublicKey: st.WGPublicKey, Fingerprint: fp, ServerURL: st.ServerURL,
		IdentityKey: st.Identity.IdentityKey, IdentityFingerprint: st.Identity.Fingerprint, Messaging: st.Identity.Messaging,
		Enrolled: !st.Removed && !st.Expired, Advice: st.Advice}, nil
}

// Fingerprint is the first 8 hex digits of the SHA-256 of a base64
// WireGuard public key's 32 bytes.
func Fingerprint(key string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("bad WireGuard public key %q", key)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:4]), nil
}
