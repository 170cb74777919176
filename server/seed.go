package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/wire-mesh/wire/api"
)

// SeedNode is a node as meshpop-wire's state.json held it. Its loose types
// (last_seen is a float of Unix seconds) are the Python server's.
type SeedNode struct {
	NodeID      string  `json:"node_id"`
	NodeName    string  `json:"node_name"`
	VPNIP       string  `json:"vpn_ip"`
	WGPublicKey string  `json:"wg_public_key"`
	PublicIP    string  `json:"public_ip"`
	Port        int     `json:"port"`
	NATPort     int     `json:"nat_port"`
	LANIP       string  `json:"lan_ip"`
	LastSeen    float64 `json:"last_seen"`
}

// parseSeedState reads the nodes of a seed state.json. It accepts the
// shapes the Python server wrote: {"nodes": {...}} or {"nodes": [...]},
// or the map of node_id to node alone.
func parseSeedState(b []byte) ([]SeedNode, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := top["nodes"]
	if !ok {
		raw = b
	}
	var list []SeedNode
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var byID map[string]SeedNode
	if err := json.Unmarshal(raw, &byID); err != nil {
		return nil, fmt.Errorf("nodes: want a list or a map of node_id to node: %w", err)
	}
	for id, n := range byID {
		if n.NodeID == "" {
			n.NodeID = id
		}
		list = append(list, n)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].NodeID < list[j].NodeID })
	return list, nil
}

// importSeed adds the nodes of a seed state.json to the store, keeping
// their names and VPN addresses, once per file content.
func (s *Server) importSeed(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("WIRE_STATE_FILE: %w", err)
	}
	sum := sha256.Sum256(b)
	mark := "seed_import_" + hex.EncodeToString(sum[:8])
	if done, err := s.store.Meta(ctx, mark); err != nil || done != "" {
		return err
	}
	nodes, err := parseSeedState(b)
	if err != nil {
		return fmt.Errorf("WIRE_STATE_FILE %s: %w", path, err)
	}
	existing, err := s.store.Nodes(ctx)
	if err != nil {
		return err
	}
	alloc := newAllocator(s.cfg.Subnet)
	for _, r := range existing {
		if a, err := netip.ParseAddr(r.VPNIP); err == nil {
			alloc.take(a, r.NodeID)
		}
	}
	imported := 0
	for _, n := range nodes {
		if err := s.importSeedNode(ctx, alloc, n); err != nil {
			s.log.Warn("seed state: node not imported", "node", n.NodeName, "err", err)
			continue
		}
		imported++
	}
	s.log.Info("imported seed state", "file", path, "nodes", imported, "of", len(nodes))
	return s.store.SetMeta(ctx, mark, time.Now().UTC().Format(time.RFC3339))
}

func (s *Server) importSeedNode(ctx context.Context, alloc *allocator, n SeedNode) error {
	req := api.RegisterRequest{NodeID: n.NodeID, NodeName: n.NodeName, WGPublicKey: n.WGPublicKey,
		Port: n.Port, NATPort: n.NATPort, LANIP: n.LANIP}
	if req.Port == 0 {
		req.Port = 51820
	}
	if err := checkRegister(req); err != nil {
		return err
	}
	addr, err := netip.ParseAddr(n.VPNIP)
	if err != nil {
		return fmt.Errorf("vpn_ip %q: %w", n.VPNIP, err)
	}
	if err := alloc.take(addr, n.NodeID); err != nil {
		return err
	}
	seen := time.Unix(int64(n.LastSeen), 0)
	rec := record{NodeID: n.NodeID, NodeName: n.NodeName, WGPublicKey: n.WGPublicKey, VPNIP: n.VPNIP,
		PublicIP: n.PublicIP, Port: req.Port, NATPort: n.NATPort, LANIP: n.LANIP, Created: seen, LastSeen: seen}
	if _, err := s.store.Enrol(ctx, rec, nil, time.Now()); err != nil {
		alloc.release(addr)
		return err
	}
	return nil
}
