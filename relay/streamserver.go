package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The relay tells its streams apart by an address of their own, which no
// datagram's source can be: one in 100::/64 (RFC 6666, discard-only) with
// port 0. A node bound through a stream is bound to that address, and
// what the relay sends there goes onto the stream.
var streamPrefix = netip.MustParsePrefix("100::/64")

func isStreamAddr(ap netip.AddrPort) bool {
	return ap.Port() == 0 && streamPrefix.Contains(ap.Addr())
}

// streams are the relay's open streams.
type streams struct {
	mu      sync.Mutex
	last    uint64 // the last stream's number, for its address
	byAddr  map[netip.AddrPort]*stream
	byOwner map[netip.Addr]*stream
}

// stream is a node's stream at the relay.
type stream struct {
	*Stream
	addr  netip.AddrPort
	owner netip.Addr // the node its opener authenticated as; invalid: any
}

// open adds a stream over rw for owner, closing the one owner had: a node
// has one stream at a time.
func (ss *streams) open(rw io.ReadWriteCloser, owner netip.Addr) *stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byAddr == nil {
		ss.byAddr = make(map[netip.AddrPort]*stream)
		ss.byOwner = make(map[netip.Addr]*stream)
	}
	ss.last++
	b := streamPrefix.Addr().As16()
	for i := range 8 {
		b[15-i] = byte(ss.last >> (8 * i))
	}
	addr := netip.AddrPortFrom(netip.AddrFrom16(b), 0)
	st := &stream{Stream: NewStream(rw, addr), addr: addr, owner: owner}
	ss.byAddr[addr] = st
	if owner.IsValid() {
		if old := ss.byOwner[owner]; old != nil {
			old.Close()
		}
		ss.byOwner[owner] = st
	}
	return st
}

// close closes st and forgets it.
func (ss *streams) close(st *stream) {
	st.Close()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byAddr, st.addr)
	if ss.byOwner[st.owner] == st {
		delete(ss.byOwner, st.owner)
	}
}

func (ss *streams) get(addr netip.AddrPort) *stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byAddr[addr]
}

// owner is the owner of the stream at addr, if addr is an open stream's.
func (ss *streams) owner(addr netip.AddrPort) (netip.Addr, bool) {
	if !isStreamAddr(addr) {
		return netip.Addr{}, false
	}
	st := ss.get(addr)
	if st == nil {
		return netip.Addr{}, false
	}
	return st.owner, true
}

// write queues b on the stream at addr.
func (ss *streams) write(b []byte, addr netip.AddrPort) error {
	st := ss.get(addr)
	if st == nil {
		return errors.New("relay: the stream closed")
	}
	_, err := st.WriteToUDPAddrPort(b, addr)
	return err
}

func (ss *streams) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byAddr)
}

// ServeStream relays for a node over rw, a stream (see Stream), until it
// ends or ctx is done; it closes rw. owner is the VPN IP of the node that
// opened it, as the coordination server authenticated it: HELLOs on the
// stream for any other address are refused (an invalid owner admits any,
// for a server whose nodes are not authenticated). The node's HELLO binds
// it to the stream as it would to a UDP address, and a later HELLO over
// UDP moves it back; a second stream of the same owner closes the first.
func (s *Server) ServeStream(ctx context.Context, rw io.ReadWriteCloser, owner netip.Addr) error {
	st := s.streams.open(rw, owner.Unmap())
	defer s.streams.close(st)
	defer s.table.unbindAddr(st.addr)
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	buf := make([]byte, maxDatagram)
	for {
		n, _, err := st.ReadFromUDPAddrPort(buf)
		switch {
		case err == nil:
			s.handle(buf[:n], st.addr, time.Now(), nil)
		case ctx.Err() != nil, errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF):
			return nil
		default:
			return fmt.Errorf("relay: stream of %v: %w", owner, err)
		}
	}
}
