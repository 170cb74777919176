package mcp

import (
	"context"
	"encoding/json"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
)

// The resources.
const (
	StatusURI = "wire://status"
	PeersURI  = "wire://peers"
)

func (s *Server) addResources() {
	s.srv.AddResource(&sdk.Resource{URI: StatusURI, Name: "status", MIMEType: "application/json",
		Description: "The whole network as this node sees it (what wire_status returns)."}, s.readResource)
	s.srv.AddResource(&sdk.Resource{URI: PeersURI, Name: "peers", MIMEType: "application/json",
		Description: "The peers this node's WireGuard is configured with (what wire_peers returns)."}, s.readResource)
}

func (s *Server) readResource(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	v, err := s.fetch(ctx, req.Params.URI)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{
		{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)},
	}}, nil
}

// fetch reads a resource's content from the daemon.
func (s *Server) fetch(ctx context.Context, uri string) (any, error) {
	switch uri {
	case StatusURI:
		return s.client.Status(ctx)
	case PeersURI:
		ps, err := s.client.Peers(ctx)
		if ps == nil {
			ps = []node.PeerStatus{}
		}
		return PeersOutput{Peers: ps}, err
	}
	return nil, sdk.ResourceNotFoundError(uri)
}

// essence is the part of a resource whose change is worth a
// notification: the peer set, paths and online states, not timestamps or
// byte counts. A daemon that does not answer is a state too.
func (s *Server) essence(ctx context.Context, uri string) string {
	if peer, ok := inboxPeer(uri); ok {
		return s.inboxEssence(ctx, peer)
	}
	v, err := s.fetch(ctx, uri)
	if err != nil {
		return "error: " + err.Error()
	}
	var peers []node.PeerStatus
	head := ""
	switch v := v.(type) {
	case node.Status:
		peers = v.Peers
		head = fmt.Sprintf("%s %s %s:%d reachable=%t relay=%s", v.NodeName, v.VPNIP, v.PublicIP, v.NATPort, v.ServerReachable, v.Relay)
	case PeersOutput:
		peers = v.Peers
	}
	for _, p := range peers {
		head += fmt.Sprintf("\n%s %s %s %s %s", p.NodeName, p.VPNIP, p.Status, p.Path, p.Endpoint)
	}
	return head
}
