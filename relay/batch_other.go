//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// batchIO would read and write batches of datagrams; only Linux has them.
type batchIO struct{}

// newBatchIO returns nil: the relay reads and writes one datagram at a
// time.
func newBatchIO(*net.UDPConn) *batchIO { return nil }

func (*batchIO) enableGRO() bool { return false }

func (*batchIO) read([][]byte, []int, []int, []netip.AddrPort) (int, error) {
	panic("relay: batch read without batches")
}

func (*batchIO) write([]byte, [][]byte, []netip.AddrPort) (int, error) {
	panic("relay: batch write without batches")
}
