package diag

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/service"
)

// Watchdog is what watch reports.
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

// Watch reports every peer's handshake and path, which are stale, and the
// state of the daemon's service. It fails only if the daemon does not
// answer, and then returns the service's state all the same.
func Watch(ctx context.Context, c *node.Client) (Watchdog, error) {
	w := Watchdog{Peers: []PeerHealth{}, Service: serviceState(ctx)}
	ps, err := c.Peers(ctx)
	if err != nil {
		return w, err
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
	return w, nil
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
