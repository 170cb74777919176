package server

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
)

// What the admin's dashboard (package dashboard) reads of a running
// server, and changes through it. Changes go to the store, as the admin
// commands' do, and reach this server (and its replicas) by the store's
// change log within watchEvery.

// MeshNode is one node as the dashboard shows it.
type MeshNode struct {
	NodeID   string    `json:"node_id"`
	NodeName string    `json:"node_name"`
	VPNIP    string    `json:"vpn_ip"`
	Tags     []string  `json:"tags"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen"`
	Endpoint string    `json:"endpoint,omitempty"` // public address and NAT port, as STUN saw them
	Version  string    `json:"version,omitempty"`  // of wire on the node, as it last said
	Expires  time.Time `json:"expires,omitzero"`
	Relay    bool      `json:"relay"` // bound to this server's relay
	// Relayed are the peers this node said it reaches through the relay
	// (by node id), as of its last heartbeat here.
	Relayed []string `json:"relayed,omitempty"`
}

// Mesh is the mesh as the dashboard shows it: every node.
type Mesh struct {
	Nodes []MeshNode `json:"nodes"`
}

// Mesh reads every node.
func (s *Server) Mesh() Mesh {
	bound := map[string]bool{}
	for _, b := range s.relay.Nodes() {
		bound[b.VPNIP.String()] = true
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	m := Mesh{Nodes: make([]MeshNode, 0, len(s.reg.nodes))}
	for _, n := range s.reg.nodes {
		mn := MeshNode{NodeID: n.NodeID, NodeName: n.NodeName, VPNIP: n.VPNIP, Tags: slices.Clone(n.Tags), Online: n.online,
			LastSeen: n.LastSeen.UTC(), Version: n.said.version, Expires: n.ExpiresAt, Relay: bound[n.VPNIP], Relayed: slices.Clone(n.said.relayed)}
		if mn.Tags == nil {
			mn.Tags = []string{}
		}
		if n.PublicIP != "" {
			mn.Endpoint = n.PublicIP
			if n.NATPort != 0 {
				mn.Endpoint = net.JoinHostPort(n.PublicIP, strconv.Itoa(n.NATPort))
			}
		}
		m.Nodes = append(m.Nodes, mn)
	}
	slices.SortFunc(m.Nodes, func(a, b MeshNode) int {
		return strings.Compare(strings.ToLower(a.NodeName), strings.ToLower(b.NodeName))
	})
	return m
}

// Changed returns a channel that closes at the mesh's next change.
func (s *Server) Changed() <-chan struct{} {
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	return s.reg.changed
}

// Store is the server's store, for the admin's changes.
func (s *Server) Store() *Store { return s.store }

// CreateKeyWith stores a new join key for this server's mesh.
func (s *Server) CreateKeyWith(ctx context.Context, o KeyOptions) (api.JoinKey, error) {
	return s.store.CreateKey(ctx, s.id.Pin, o)
}
