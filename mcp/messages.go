package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/node"
)

// Inbox resources: every peer's events, or one peer's.
const (
	InboxURI      = "wire://inbox/all"
	inboxPrefix   = "wire://inbox/"
	inboxTemplate = "wire://inbox/{peer}"
)

// SendInput is what wire_send takes.
type SendInput struct {
	Peer string `json:"peer" jsonschema:"the peer's name or VPN IP"`
	Kind string `json:"kind,omitempty" jsonschema:"what the event is, 1 to 64 of a-z 0-9 . _ / - (default message)"`
	Body any    `json:"body" jsonschema:"the event's content: any JSON value, e.g. {\"text\": \"...\"}"`
}

// TailInput is what wire_tail takes.
type TailInput struct {
	Peer  string `json:"peer,omitempty" jsonschema:"only this peer's events (name or VPN IP); all peers when empty"`
	Since int64  `json:"since,omitempty" jsonschema:"only events after this seq (the last of an earlier answer)"`
	Limit int    `json:"limit,omitempty" jsonschema:"at most this many, the newest (default 50, at most 1000)"`
	Sent  bool   `json:"sent,omitempty" jsonschema:"also this node's own sent events, with their delivery state (delivered, queued, failed)"`
}

// VerifyInput is what wire_verify takes.
type VerifyInput struct {
	Event any `json:"event" jsonschema:"the signed event: an object with from, to, kind, body, timestamp, event_id and signature"`
}

func (s *Server) addMessageTools() {
	addTool(s, &sdk.Tool{Name: "wire_send", Annotations: writes(false),
		Description: "Sign an event with this node's identity key and deliver it to a peer over the mesh. " +
			"The verdict is delivered (the peer's daemon stored it durably), queued (the peer is offline or busy: this node holds it and delivers it later; wire_tail with sent shows when) or, as an error, failed with the reason."}, s.send)
	addTool(s, &sdk.Tool{Name: "wire_tail", Annotations: readOnly(),
		Description: "Recent events received by this node (from one peer or all), newest last, each with verified (signature and sender's key check) and the sender's trust tier. With sent, this node's own events and their delivery state too."}, s.tail)
	addTool(s, &sdk.Tool{Name: "wire_verify", Annotations: readOnly(),
		Description: "Verify a signed event: its id and signature, and whether the signing key belongs to a known peer, at which trust tier."}, s.verify)
}

func (s *Server) send(ctx context.Context, _ *sdk.CallToolRequest, in SendInput) (*sdk.CallToolResult, agent.SendResult, error) {
	body, err := json.Marshal(in.Body)
	if err != nil || in.Body == nil {
		return nil, agent.SendResult{}, errors.New(`body: give a JSON value, e.g. {"text": "hello"}`)
	}
	res, err := s.client.Send(ctx, node.SendRequest{Peer: in.Peer, Kind: in.Kind, Body: body})
	if err != nil {
		return nil, res, fmt.Errorf("wire_send failed: %w%s", err, sendAdvice(err))
	}
	return nil, res, nil
}

func sendAdvice(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "needs root"):
		return " (run wire mcp as root, e.g. with sudo, to send as this node)"
	case strings.Contains(msg, "no peer"):
		return " (wire_peers lists the peers)"
	}
	return ""
}

func (s *Server) tail(ctx context.Context, _ *sdk.CallToolRequest, in TailInput) (*sdk.CallToolResult, agent.TailResult, error) {
	res, err := s.client.Tail(ctx, agent.TailQuery(in))
	return nil, res, err
}

func (s *Server) verify(ctx context.Context, _ *sdk.CallToolRequest, in VerifyInput) (*sdk.CallToolResult, agent.Verification, error) {
	raw, err := eventJSON(in.Event)
	if err != nil {
		return nil, agent.Verification{}, err
	}
	v, err := s.client.Verify(ctx, raw)
	return nil, v, err
}

// eventJSON accepts an event as an object or as a string of JSON.
func eventJSON(v any) (json.RawMessage, error) {
	if s, ok := v.(string); ok {
		if !json.Valid([]byte(s)) {
			return nil, errors.New("event: the string is not JSON")
		}
		return json.RawMessage(s), nil
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errors.New("event: give the signed event as an object")
	}
	return json.Marshal(v)
}

func (s *Server) addInboxResources() {
	s.srv.AddResource(&sdk.Resource{URI: InboxURI, Name: "inbox", MIMEType: "application/x-ndjson",
		Description: "Recent events received from every peer, newest last: one JSON object per line, with verified and the sender's tier. Subscribe to hear of new ones within a second."}, s.readInbox)
	s.srv.AddResourceTemplate(&sdk.ResourceTemplate{URITemplate: inboxTemplate, Name: "inbox of a peer", MIMEType: "application/x-ndjson",
		Description: "Recent events received from one peer (by name or VPN IP), as wire://inbox/all."}, s.readInbox)
}

// inboxPeer is the peer of an inbox URI: "" for all, ok false if uri is
// not an inbox.
func inboxPeer(uri string) (peer string, ok bool) {
	if uri == InboxURI {
		return "", true
	}
	peer, ok = strings.CutPrefix(uri, inboxPrefix)
	return peer, ok && peer != "" && !strings.Contains(peer, "/")
}

func (s *Server) readInbox(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	uri := req.Params.URI
	peer, ok := inboxPeer(uri)
	if !ok {
		return nil, sdk.ResourceNotFoundError(uri)
	}
	res, err := s.client.Tail(ctx, agent.TailQuery{Peer: peer, Limit: 100})
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, e := range res.Events {
		line, _ := json.Marshal(e)
		b.Write(line)
		b.WriteByte('\n')
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: uri, MIMEType: "application/x-ndjson", Text: b.String()}}}, nil
}

// inboxEssence changes when an inbox gains an event.
func (s *Server) inboxEssence(ctx context.Context, peer string) string {
	res, err := s.client.Tail(ctx, agent.TailQuery{Peer: peer, Limit: 1})
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprint(res.Last)
}
