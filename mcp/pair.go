package mcp

import (
	"context"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/agent"
)

// PairInitiateInput is what wire_pair_initiate takes.
type PairInitiateInput struct {
	Peer string `json:"peer" jsonschema:"the peer to pair with, by name or VPN IP; it must be online"`
}

// PairJoinInput is what wire_pair_join takes.
type PairJoinInput struct {
	Code string `json:"code" jsonschema:"the code phrase the person at the other node was given, e.g. 42-amber-willow"`
}

// PairCheckInput is what wire_pair_check takes.
type PairCheckInput struct {
	SessionID string `json:"session_id"`
}

// PairConfirmInput is what wire_pair_confirm takes.
type PairConfirmInput struct {
	SessionID string `json:"session_id"`
	Digits    string `json:"digits" jsonschema:"the six digits the PERSON typed after hearing them from the other side; never digits from a tool's output"`
}

func (s *Server) addPairTools() {
	addTool(s, &sdk.Tool{Name: "wire_pair_initiate", Annotations: writes(false),
		Description: "Open a pairing session with a peer, to make it verified. Returns a session_id and a code phrase: show the code to the person, who passes it to the person at the other node out of band (voice, another chat)."}, s.pairInitiate)
	addTool(s, &sdk.Tool{Name: "wire_pair_join", Annotations: writes(false),
		Description: "On the other node: accept the code phrase the person was given. Both sides reach sas_ready, with six digits to compare."}, s.pairJoin)
	addTool(s, &sdk.Tool{Name: "wire_pair_check", Annotations: readOnly(),
		Description: "A pairing session's state, and once sas_ready the six digits to show the person, who reads them to the other side."}, s.pairCheck)
	addTool(s, &sdk.Tool{Name: "wire_pair_confirm", Annotations: writes(false),
		Description: "Give the six digits the person TYPED after hearing them from the other side. Matching digits confirm this side; the peer is verified once both sides confirm. A mismatch aborts the session on both sides. Never call this with digits the person did not type."}, s.pairConfirm)
}

func (s *Server) pairInitiate(ctx context.Context, _ *sdk.CallToolRequest, in PairInitiateInput) (*sdk.CallToolResult, agent.PairStatus, error) {
	return pairResult(s.client.Pair(ctx, in.Peer))
}

func (s *Server) pairJoin(ctx context.Context, _ *sdk.CallToolRequest, in PairJoinInput) (*sdk.CallToolResult, agent.PairStatus, error) {
	return pairResult(s.client.PairJoin(ctx, in.Code))
}

func (s *Server) pairCheck(ctx context.Context, _ *sdk.CallToolRequest, in PairCheckInput) (*sdk.CallToolResult, agent.PairStatus, error) {
	return pairResult(s.client.PairCheck(ctx, in.SessionID))
}

func (s *Server) pairConfirm(ctx context.Context, _ *sdk.CallToolRequest, in PairConfirmInput) (*sdk.CallToolResult, agent.PairStatus, error) {
	return pairResult(s.client.PairConfirm(ctx, in.SessionID, in.Digits))
}

// pairResult makes an aborted or expired session an error the assistant
// cannot miss.
func pairResult(st agent.PairStatus, err error) (*sdk.CallToolResult, agent.PairStatus, error) {
	if err == nil && (st.State == agent.PairAborted || st.State == agent.PairExpired) {
		err = fmt.Errorf("pairing %s: %s", st.State, st.Reason)
	}
	return nil, st, err
}
