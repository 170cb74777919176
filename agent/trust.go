package agent

import (
	"context"
	"fmt"
)

// Trust is what this node holds of a peer's identity.
type Trust struct {
	NodeName string `json:"node_name"`
	Tier     string `json:"tier" jsonschema:"introduced (known through the coordination server), verified (paired by SAS) or blocked"`
	// IdentityKey is the key its events must be signed with, once known.
	IdentityKey string `json:"identity_key,omitempty"`
	// KeyAlert says the server presented a key other than the pinned one.
	KeyAlert string `json:"key_alert,omitempty"`
}

// Trust returns what this node holds of each peer it knows, by node_id.
func (a *Agent) Trust(ctx context.Context) (map[string]Trust, error) {
	rows, err := a.store.peers(ctx)
	out := make(map[string]Trust, len(rows))
	for _, p := range rows {
		out[p.NodeID] = Trust{NodeName: p.NodeName, Tier: tier(p), IdentityKey: trustedKey(p), KeyAlert: p.KeyAlert}
	}
	return out, err
}

// Block stops (or, with blocked false, resumes) taking events from a
// peer, and fails what the outbox holds for it.
func (a *Agent) Block(ctx context.Context, who string, blocked bool) (string, error) {
	p, err := a.find(ctx, who)
	if err != nil {
		return "", err
	}
	if err := a.store.setPeerField(ctx, p.NodeID, "blocked", blocked); err != nil {
		return "", fmt.Errorf("recording the block: %w", err)
	}
	if blocked {
		queued, err := a.store.queued(ctx, p.NodeID)
		if err != nil {
			return p.NodeName, err
		}
		for _, d := range queued {
			a.store.settle(ctx, d.Seq, Failed, "you blocked "+p.NodeName)
		}
	}
	return p.NodeName, nil
}
