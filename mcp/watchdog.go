package mcp

import (
	"context"
	"os/exec"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/service"
)

// Watchdog is what wire_watchdog returns.
type Watchdog struct {
	Peers   []PeerHealth `json:"peers"`
	Stale   int          `json:"stale" jsonschema:"how many peers have had no handshake for over 3 minutes, idle ones aside"`
	Service Service      `json:"service"`
}

// PeerHealth is one peer's handshake and path.
type PeerHealth struct {
	NodeName        string     `json:"node_name"`
	VPNIP           string     `json:"vpn_ip"`
	Path            string     `json:"path" jsonschema:"direct, relay, idle (asleep: no traffic for 5 minutes) or none"`
	LatestHandshake *time.Time `json:"latest_handshake"`
	HandshakeAgoS   int64      `json:"handshake_ago_s" jsonschema:"seconds since the latest handshake, -1 if none"`
	Stale           bool       `json:"stale" jsonschema:"no handshake for over 3 minutes, and not idle (an idle peer has no session until traffic wakes it)"`
}

// Service is the state of the daemon and its service.
type Service struct {
	Daemon  string `json:"daemon" jsonschema:"running or not running"`
	Systemd bool   `json:"systemd"`
	Unit    string `json:"unit,omitempty"`
	State   string `json:"state" jsonschema:"the unit's state (systemctl is-active), or no systemd"`
}

func (s *Server) watchdog(ctx context.Context, _ *sdk.CallToolRequest, _ NoInput) (*sdk.CallToolResult, Watchdog, error) {
	w := Watchdog{Peers: []PeerHealth{}, Service: serviceState(ctx)}
	ps, err := s.client.Peers(ctx)
	if err != nil {
		return nil, w, err
	}
	w.Service.Daemon = "running"
	now := time.Now()
	for _, p := range ps {
		h := PeerHealth{NodeName: p.NodeName, VPNIP: p.VPNIP, Path: p.Path, LatestHandshake: p.LatestHandshake, HandshakeAgoS: -1, Stale: p.Path != node.PathIdle}
		if p.LatestHandshake != nil {
			ago := now.Sub(*p.LatestHandshake)
			h.HandshakeAgoS = int64(ago.Seconds())
			h.Stale = h.Stale && ago > node.Stale
		}
		if h.Stale {
			w.Stale++
		}
		w.Peers = append(w.Peers, h)
	}
	return nil, w, nil
}

func serviceState(ctx context.Context) Service {
	sv := Service{Daemon: "not running", State: "no systemd"}
	// launchd's job state is not reported: the field is systemd's.
	if service.Manager != "systemd" || !service.Available() {
		return sv
	}
	sv.Systemd, sv.Unit = true, node.ServiceName
	out, _ := exec.CommandContext(ctx, "systemctl", "is-active", node.ServiceName).Output()
	sv.State = strings.TrimSpace(string(out))
	return sv
}
