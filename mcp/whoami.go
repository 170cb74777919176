package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
)

// Identity is what wire_whoami returns.
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
	Enrolled            bool   `json:"enrolled" jsonschema:"false once the server has said it does not know this node (its admin removed it)"`
	Advice              string `json:"advice,omitempty" jsonschema:"what to do when the node is not enrolled"`
}

func (s *Server) whoami(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, Identity, error) {
	st, err := s.client.Status(ctx)
	if err != nil {
		return nil, Identity{}, err
	}
	fp, err := Fingerprint(st.WGPublicKey)
	if err != nil {
		return nil, Identity{}, err
	}
	return nil, Identity{NodeName: st.NodeName, VPNIP: st.VPNIP, WGPublicKey: st.WGPublicKey, Fingerprint: fp, ServerURL: st.ServerURL,
		IdentityKey: st.Identity.IdentityKey, IdentityFingerprint: st.Identity.Fingerprint, Messaging: st.Identity.Messaging,
		Enrolled: !st.Removed, Advice: st.Advice}, nil
}

// InitInput is what wire_init takes.
type InitInput struct {
	NodeName string `json:"node_name,omitempty" jsonschema:"the name this node should have; if it already has another, nothing changes and the error says how to rename or rotate deliberately"`
}

func (s *Server) init(_ context.Context, _ *sdk.CallToolRequest, in InitInput) (*sdk.CallToolResult, node.InitResult, error) {
	res, err := node.Init(s.opts.Dir, in.NodeName)
	return nil, res, err
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
