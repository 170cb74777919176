package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"time"

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

// cacheEvery is how often at most the peer cache is written. Encoding
// and syncing 10,000 peers takes about 15 ms: done for every change, under
// the daemon's lock, it was half of what a one-peer change cost. A crash
// loses at most the last second of changes from the cache, which the
// server gives again.
const cacheEvery = time.Second

// keepCache writes the peer cache when the peers changed, at most once per
// cacheEvery, outside the daemon's lock; and once more at the end if a
// change is still unwritten.
func (d *Daemon) keepCache(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			select {
			case <-d.cacheDue:
				d.saveCache()
			default:
			}
			return
		case <-d.cacheDue:
			d.saveCache()
			sleep(ctx, cacheEvery)
		}
	}
}

// saveCache writes the peers as they are now.
func (d *Daemon) saveCache() {
	d.mu.Lock()
	list := make([]api.Peer, 0, len(d.peers))
	for _, p := range d.peers {
		list = append(list, p)
	}
	d.mu.Unlock()
	savePeers(d.dir, list, d.log)
}

func savePeers(dir string, list []api.Peer, log *slog.Logger) {
	b, _ := json.MarshalIndent(list, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, PeersFile), b, 0o644); err != nil {
		log.Warn("saving the peer cache", "err", err)
	}
}
