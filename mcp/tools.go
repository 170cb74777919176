package mcp

import (
	"context"
	"fmt"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/node"
)

// NoInput is the input of tools that take no arguments.
type NoInput struct{}

// PeersOutput is what wire_peers returns.
type PeersOutput struct {
	Peers []node.PeerStatus `json:"peers" jsonschema:"the peers WireGuard is configured with"`
}

// PingInput is what wire_ping takes.
type PingInput struct {
	Target string `json:"target" jsonschema:"the peer's name or VPN IP"`
	Count  int    `json:"count,omitempty" jsonschema:"how many echo requests to send, a second apart (default 3, at most 20)"`
}

// DownOutput is what wire_down returns.
type DownOutput struct {
	Message string `json:"message"`
}

// InstallOutput is what wire_install returns.
type InstallOutput struct {
	OK     bool         `json:"ok" jsonschema:"true when every check passed"`
	Checks []node.Check `json:"checks"`
}

func readOnly() *sdk.ToolAnnotations {
	return &sdk.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)}
}

// writes is for tools that change state without destroying any.
func writes(idempotent bool) *sdk.ToolAnnotations {
	return &sdk.ToolAnnotations{DestructiveHint: new(false), IdempotentHint: idempotent, OpenWorldHint: new(false)}
}

func destructive() *sdk.ToolAnnotations {
	return &sdk.ToolAnnotations{DestructiveHint: new(true), IdempotentHint: true, OpenWorldHint: new(false)}
}

func (s *Server) addTools() {
	addTool(s, &sdk.Tool{Name: "wire_status", Annotations: readOnly(),
		Description: "The whole network: every node, online/offline, VPN IPs, path (direct/relay) and last handshake."}, s.status)
	addTool(s, &sdk.Tool{Name: "wire_peers", Annotations: readOnly(),
		Description: "List the peers this node's WireGuard is configured with, each with its trust tier: introduced (known through the coordination server), verified (paired by SAS), blocked; and key_alert when the server presents another key than the verified one."}, s.peers)
	addTool(s, &sdk.Tool{Name: "wire_ping", Annotations: readOnly(),
		Description: "Ping a peer by name or VPN IP over the tunnel, reporting the path and round-trip times."}, s.ping)
	addTool(s, &sdk.Tool{Name: "wire_down", Annotations: destructive(),
		Description: "Tear the tunnel down: remove the interface and stop the daemon."}, s.down)
	addTool(s, &sdk.Tool{Name: "wire_up", Annotations: destructive(),
		Description: "Bring the tunnel up with the saved config, or join a mesh with the given server and join key."}, s.up)
	addTool(s, &sdk.Tool{Name: "wire_install", Annotations: readOnly(),
		Description: "Check the platform and this node's setup, and say what is missing."}, s.install)
	addTool(s, &sdk.Tool{Name: "wire_diagnose", Annotations: readOnly(),
		Description: "Full diagnosis: engine, server reachable, interface up, registered, STUN mapping; each check with its finding and a fix."}, s.diagnose)
	addTool(s, &sdk.Tool{Name: "wire_watchdog", Annotations: readOnly(),
		Description: "Peer handshakes, stale connections (no handshake for over 3 minutes) and the service state."}, s.watchdog)
	addTool(s, &sdk.Tool{Name: "wire_netcheck", Annotations: readOnly(),
		Description: "How this node's network looks from its server: its public address, the kind of NAT (a symmetric one defeats hole punching), whether UDP to the server and its relay works and how fast, and what that means for direct connections."}, s.netcheck)
	addTool(s, &sdk.Tool{Name: "wire_whoami", Annotations: readOnly(),
		Description: "This node: name, VPN IP, WireGuard public key and its short fingerprint, server URL, its identity key (which signs its messages) and that key's fingerprint, and whether it is enrolled."}, s.whoami)
	addTool(s, &sdk.Tool{Name: "wire_init", Annotations: writes(true),
		Description: "Create this node's identity key if it has none. Idempotent: with an identity already there it changes nothing; it never re-keys or renames (asking for another name is an error that says how to do it deliberately)."}, s.init)
	s.addMessageTools()
	s.addPairTools()
}

func (s *Server) status(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, node.Status, error) {
	st, err := s.client.Status(ctx)
	return nil, st, err
}

func (s *Server) peers(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, PeersOutput, error) {
	ps, err := s.client.Peers(ctx)
	if ps == nil {
		ps = []node.PeerStatus{}
	}
	return nil, PeersOutput{Peers: ps}, err
}

// ping pings one echo at a time, so it can report progress and stop
// when cancelled.
func (s *Server) ping(ctx context.Context, req *sdk.CallToolRequest, in PingInput) (*sdk.CallToolResult, node.PingResult, error) {
	count := in.Count
	if count <= 0 {
		count = 3
	}
	count = min(count, 20)
	var res node.PingResult
	for i := range count {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, node.PingResult{}, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		r, err := s.client.Ping(ctx, node.PingRequest{Target: in.Target, Count: 1})
		if err != nil {
			return nil, node.PingResult{}, err
		}
		if i == 0 {
			res = r
			res.Replies = []node.PingReply{}
			res.Sent, res.Received = 0, 0
		}
		for _, rep := range r.Replies {
			rep.Seq = i
			res.Replies = append(res.Replies, rep)
		}
		res.Sent += r.Sent
		res.Received += r.Received
		res.Path = r.Path
		progress(ctx, req, float64(i+1), float64(count), fmt.Sprintf("%d/%d echo requests sent", i+1, count))
	}
	return nil, res, nil
}

func (s *Server) down(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, DownOutput, error) {
	msg, err := node.Down(ctx, s.client)
	return nil, DownOutput{Message: msg}, err
}

func (s *Server) install(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, InstallOutput, error) {
	checks := node.Checks(ctx, s.opts.Dir)
	return nil, InstallOutput{OK: diag.AllOK(checks), Checks: checks}, nil
}

// progress notifies the client of progress, if it asked for it.
func progress(ctx context.Context, req *sdk.CallToolRequest, done, total float64, msg string) {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return
	}
	req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: done, Total: total, Message: msg})
}
