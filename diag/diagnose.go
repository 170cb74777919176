// Package diag is what wire diagnose, wire watchdog and wire whoami
// report of a node, the same for the CLI and the MCP tools of those
// names: one code path, two ways to show it.
package diag

import (
	"context"
	"fmt"

	"github.com/wire-mesh/wire/node"
)

// Diagnosis is what diagnose reports.
type Diagnosis struct {
	OK     bool         `json:"ok" jsonschema:"true when every check passed"`
	Checks []node.Check `json:"checks"`
}

// Progress hears of a long check's steps: step of total done, and what
// comes next.
type Progress func(step, total int, msg string)

// Diagnose runs wire install's checks on the node in dir, then checks
// its running daemon's status: engine, server, interface, registration
// and STUN mapping. progress, if not nil, hears of its steps.
func Diagnose(ctx context.Context, dir string, c *node.Client, progress Progress) Diagnosis {
	if progress == nil {
		progress = func(int, int, string) {}
	}
	progress(0, 2, "checking the platform and config")
	checks := node.Checks(ctx, dir)
	progress(1, 2, "asking the daemon")
	st, err := c.Status(ctx)
	if err != nil {
		checks = append(checks, node.Check{Name: "status", Finding: err.Error(), Fix: "start the daemon: sudo wire up"})
	} else {
		checks = append(checks, statusChecks(st)...)
	}
	progress(2, 2, "done")
	return Diagnosis{OK: AllOK(checks), Checks: checks}
}

func statusChecks(st node.Status) []node.Check {
	registered := check("registered", st.VPNIP != "" && !st.Removed && !st.Expired, fmt.Sprintf("registered as %s (%s)", st.NodeName, st.VPNIP),
		"not registered: the server does not know this node (it was removed)", "sudo wire down, then sudo wire up --server URL --join KEY (a new key from wire server key create)")
	if st.Expired {
		registered.Finding, registered.Fix = "this node's enrolment expired", "sudo wire up --join KEY (a key from wire server key create)"
	}
	return []node.Check{
		check("engine", st.Engine != "", "WireGuard engine: "+st.Engine,
			"no WireGuard engine", "install wireguard-tools, or run wire up as root for the kernel module"),
		check("server_reachable", st.ServerReachable, st.ServerURL+" answers",
			"cannot reach "+st.ServerURL, "check that wire server runs there and that its port is reachable from here"),
		check("interface", st.Interface != "", "interface "+st.Interface+" is up",
			"no interface", "sudo wire down, then sudo wire up"),
		registered,
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

// AllOK says whether every check passed.
func AllOK(checks []node.Check) bool {
	for _, c := range checks {
		if !c.OK {
			return false
		}
	}
	return true
}
