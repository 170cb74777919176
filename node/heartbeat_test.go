package node

import (
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

// The heartbeat period a server asks for is kept within 30 s and half of
// the window in which a node counts as online; an old server, which asks
// nothing, gets the seed's 30 s.
func TestHeartbeatPeriod(t *testing.T) {
	var d Daemon
	if got := d.heartbeatPeriod(); got != heartbeatEvery {
		t.Errorf("before any answer: %v, want %v", got, heartbeatEvery)
	}
	for _, tt := range []struct {
		secs int
		want time.Duration
	}{
		{0, heartbeatEvery}, {5, heartbeatEvery}, {120, 2 * time.Minute}, {100000, api.Online / 2},
	} {
		d.setHeartbeat(tt.secs)
		if got := d.heartbeatPeriod(); got != tt.want {
			t.Errorf("heartbeat_every %d: period %v, want %v", tt.secs, got, tt.want)
		}
	}
}
