package mcp

import (
	"context"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
)

// InitInput is what wire_init takes.
type InitInput struct {
	NodeName string `json:"node_name,omitempty" jsonschema:"the name this node should have; if it already has another, nothing changes and the error says how to rename or rotate deliberately"`
}

func (s *Server) init(_ context.Context, _ *sdk.CallToolRequest, in InitInput) (*sdk.CallToolResult, node.InitResult, error) {
	res, err := node.Init(s.opts.Dir, in.NodeName)
	return nil, res, err
}
