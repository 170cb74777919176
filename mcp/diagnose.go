package mcp

import (
	"context"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
)

// Diagnosis is what wire_diagnose returns.
type Diagnosis struct {
	OK     bool         `json:"ok" jsonschema:"true when every check passed"`
	Checks []node.Check `json:"checks"`
}

// diagnose runs wire install's checks, then checks the running node's
// status: engine, server, interface, registration and STUN mapping.
func (s *Server) diagnose(ctx context.Context, req *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, Diagnosis, error) {
	progress(ctx, req, 0, 2, "checking the platform and config")
	checks := node.Checks(ctx, s.opts.Dir)
	if err := ctx.Err(); err != nil {
		return nil, Diagnosis{}, err
	}
	progress(ctx, req, 1, 2, "asking the daemon")
	st, err := s.client.Status(ctx)
	if err != nil {
		checks = append(checks, node.Check{Name: "status", Finding: err.Error(), Fix: "start the daemon: sudo wire up"})
	} else {
		checks = append(checks, statusChecks(st)...)
	}
	progress(ctx, req, 2, 2, "done")
	return nil, Diagnosis{OK: allOK(checks), Checks: checks}, nil
}

func statusChecks(st node.Status) []node.Check {
	return []node.Check{
		check("engine", st.Engine != "", "WireGuard engine: "+st.Engine,
			"no WireGuard engine", "install wireguard-tools, or run wire up as root for the kernel module"),
		check("server_reachable", st.ServerReachable, st.ServerURL+" answers",
			"cannot reach "+st.ServerURL, "check that wire server runs there and that its port is reachable from here"),
		check("interface", st.Interface != "", "interface "+st.Interface+" is up",
			"no interface", "sudo wire down, then sudo wire up"),
		check("registered", st.VPNIP != "" && !st.Removed, fmt.Sprintf("registered as %s (%s)", st.NodeName, st.VPNIP),
			"not registered: the server does not know this node (it was removed)", "sudo wire down, then sudo wire up --server URL --join KEY (a new key from wire server key create)"),
		check("stun", st.PublicIP != "" && st.NATPort != 0, fmt.Sprintf("STUN mapping %s:%d", st.PublicIP, st.NATPort),
			"no STUN mapping", "allow UDP to the server's STUN port; until then peers may need the relay"),
	}
}

func check(name string, ok bool, good, bad, fix string) node.Check {
	if ok {
		return node.Check{Name: name, OK: true, Finding: good}
	}
	return node.Check{Name: name, Finding: bad, Fix: fix}
}
