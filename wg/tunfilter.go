package wg

import (
	"sync"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/wire-mesh/wire/filter"
)

// filteredTUN is the TUN device as wireguard-go sees it: packets from the
// mesh (Write) pass the filter's Inbound or are dropped, and packets to
// the mesh (Read) are shown to its Outbound, so that their answers pass.
// Without rules it adds one atomic load per call. Both ways, the packets
// are noted by lazy (if set): they wake the peers they go to and keep
// their peers awake.
type filteredTUN struct {
	tun.Device
	filter *filter.Filter
	lazy   *lazyPeers
}

// kept holds the slices of the packets a Write keeps: wireguard-go calls
// Write from a goroutine per peer at once.
var kept = sync.Pool{New: func() any { return new([][]byte) }}

// Write writes the packets the filter lets in. Each bufs[i][offset:] is an
// IP packet, and the room before offset is the device's, as for any
// tun.Device. Dropped packets count as written: for wireguard-go they are
// dealt with.
func (t *filteredTUN) Write(bufs [][]byte, offset int) (int, error) {
	if t.lazy != nil {
		t.lazy.received(bufs, offset)
	}
	if !t.filter.Enabled() {
		return t.Device.Write(bufs, offset)
	}
	for i, b := range bufs {
		if !t.filter.Inbound(b[offset:]) {
			return t.writeKept(bufs, offset, i)
		}
	}
	return t.Device.Write(bufs, offset)
}

// writeKept writes the packets of bufs the filter lets in, knowing that
// those before the dropped one at i pass.
func (t *filteredTUN) writeKept(bufs [][]byte, offset, dropped int) (int, error) {
	p := kept.Get().(*[][]byte)
	keep := append((*p)[:0], bufs[:dropped]...)
	for _, b := range bufs[dropped+1:] {
		if t.filter.Inbound(b[offset:]) {
			keep = append(keep, b)
		}
	}
	defer func() {
		clear(keep)
		*p = keep[:0]
		kept.Put(p)
	}()
	if len(keep) == 0 {
		return len(bufs), nil
	}
	n, err := t.Device.Write(keep, offset)
	return n + len(bufs) - len(keep), err
}

// Read reads packets from the system, and shows them to the filter.
func (t *filteredTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	if t.lazy != nil {
		t.lazy.sent(bufs, sizes, offset, n)
	}
	if t.filter.Enabled() {
		for i := range n {
			t.filter.Outbound(bufs[i][offset : offset+sizes[i]])
		}
	}
	return n, err
}
