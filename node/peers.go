package node

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/atomicfile"
)

// The peer cache lets a daemon restarted while the server is down bring
// its tunnels back.

func loadPeers(dir string) map[string]api.Peer {
	peers := map[string]api.Peer{}
	b, err := os.ReadFile(filepath.Join(dir, PeersFile))
	if err != nil {
		return peers
	}
	var list []api.Peer
	if json.Unmarshal(b, &list) != nil {
		return peers // a damaged cache is only a cache: the server refills it
	}
	for _, p := range list {
		peers[p.NodeID] = p
	}
	return peers
}

func savePeers(dir string, peers map[string]api.Peer, log *slog.Logger) {
	list := make([]api.Peer, 0, len(peers))
	for _, p := range peers {
		list = append(list, p)
	}
	b, _ := json.MarshalIndent(list, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, PeersFile), b, 0o644); err != nil {
		log.Warn("saving the peer cache", "err", err)
	}
}
