package mcp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
)

// UpInput is what wire_up takes; both empty means the saved config.
type UpInput struct {
	Server  string `json:"server,omitempty" jsonschema:"coordination server URL, to join a mesh the first time"`
	JoinKey string `json:"join_key,omitempty" jsonschema:"join key from wire server key create (first time only)"`
}

// up runs this binary's wire up, the CLI's own code path, with its
// output captured (never on our stdout), then reports the node's status.
func (s *Server) up(ctx context.Context, req *sdk.CallToolRequest, in UpInput) (*sdk.CallToolResult, node.Status, error) {
	if in.JoinKey != "" && in.Server == "" {
		return nil, node.Status{}, fmt.Errorf("join_key needs server too: give the coordination server URL")
	}
	bin := s.opts.Executable
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, node.Status{}, fmt.Errorf("finding the wire binary: %w", err)
		}
	}
	args := []string{"up", "--state-dir", s.opts.Dir}
	if in.Server != "" {
		args = append(args, "--server", in.Server)
	}
	if in.JoinKey != "" {
		args = append(args, "--join", in.JoinKey)
	}
	progress(ctx, req, 0, 2, "running wire up")
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		s.loggerFor(req.Session).Warn("wire up failed", "err", err, "output", msg)
		return nil, node.Status{}, fmt.Errorf("wire up failed (%v): %s", err, msg)
	}
	s.loggerFor(req.Session).Info("wire up", "output", strings.TrimSpace(out.String()))
	progress(ctx, req, 1, 2, "reading the node's status")
	st, err := s.client.Status(ctx)
	return nil, st, err
}
