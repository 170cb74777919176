package node

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"runtime"
	"testing"

	"github.com/wire-mesh/wire/api"
)

// What one peer's change costs a daemon that has N peers, as the poll loop
// and the reconciler handle it: the delta merged, the engine patched, the
// agent's and the resolver's peers updated (go test -bench OnePeerChange
// ./node). It must not grow with N. The peer cache is written at most once
// a second, whatever the changes, and is left out.
func BenchmarkOnePeerChange(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			d, _ := fedDaemon(b)
			peers := fakePeers(n)
			applyAnswer(b, d, api.PeersResponse{Peers: peers, Full: true, Version: "v.1"})
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p := peers[i%n]
				p.NATPort = 40000 + i%20000
				applyAnswer(b, d, api.PeersResponse{Peers: []api.Peer{p}, Version: fmt.Sprintf("v.%d", i+2)})
			}
			b.StopTimer()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
		})
	}
}

// fakePeers are n peers with valid keys and addresses.
func fakePeers(n int) []api.Peer {
	out := make([]api.Peer, n)
	for i := range out {
		key := make([]byte, 32)
		rand.Read(key)
		out[i] = api.Peer{
			NodeID: fmt.Sprintf("p%05d", i), NodeName: fmt.Sprintf("p%05d", i),
			VPNIP: fmt.Sprintf("10.99.%d.%d", 1+i/250, 1+i%250), WGPublicKey: base64.StdEncoding.EncodeToString(key),
			PublicIP: fmt.Sprintf("198.51.%d.%d", i/250%250, 1+i%250), Port: 51820, NATPort: 40000,
		}
	}
	return out
}
