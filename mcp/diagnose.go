package mcp

import (
	"context"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/node"
)

// diagnose is wire diagnose: wire install's checks, then the running
// node's status (engine, server, interface, registration, STUN mapping).
func (s *Server) diagnose(ctx context.Context, req *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, diag.Diagnosis, error) {
	d := diag.Diagnose(ctx, s.opts.Dir, s.client, func(step, total int, msg string) {
		progress(ctx, req, float64(step), float64(total), msg)
	})
	return nil, d, ctx.Err()
}

// watchdog is wire watchdog: peer handshakes, stale ones, the service.
func (s *Server) watchdog(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, diag.Watchdog, error) {
	w, err := diag.Watch(ctx, s.client)
	return nil, w, err
}

// whoami is wire whoami: this node's name, address, keys and enrolment.
func (s *Server) whoami(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, diag.Identity, error) {
	id, err := diag.Whoami(ctx, s.client)
	return nil, id, err
}

// netcheck is wire netcheck: the network as the node's server sees it.
func (s *Server) netcheck(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, diag.Netcheck, error) {
	cfg, err := node.LoadConfig(s.opts.Dir)
	if err != nil {
		return nil, diag.Netcheck{}, err
	}
	return nil, diag.CheckNetwork(ctx, cfg), nil
}
