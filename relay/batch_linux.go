package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchIO reads and writes batches of datagrams on a UDP socket with one
// recvmmsg or sendmmsg each. It calls the kernel directly rather than
// through golang.org/x/net/ipv4's ReadBatch, which allocates a
// *net.UDPAddr (and its IP) per datagram read: the relay's data path
// allocates nothing. A batchIO is not safe for concurrent use.
type batchIO struct {
	rc     syscall.RawConn
	family uint16 // the socket's: AF_INET or AF_INET6
	hs     []unix.Mmsghdr
	iovs   []unix.Iovec // two per message: an optional prefix, the buffer
	names  []unix.RawSockaddrInet6

	// the call in progress, for fn
	trap  uintptr
	n     int
	cnt   int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// newBatchIO returns a batchIO for c of up to maxBatch messages a call, or
// nil if c's socket cannot be used so.
func newBatchIO(c *net.UDPConn) *batchIO {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || serr != nil {
		return nil
	}
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return nil
	}
	b := &batchIO{
		rc:     rc,
		family: uint16(domain),
		hs:     make([]unix.Mmsghdr, maxBatch),
		iovs:   make([]unix.Iovec, 2*maxBatch),
		names:  make([]unix.RawSockaddrInet6, maxBatch),
	}
	b.fn = b.call
	return b
}

// read reads up to min(len(bufs), maxBatch) datagrams, waiting for the
// first, into bufs, and sets sizes and from for each. It returns how many
// it read. from must be as long as bufs.
func (b *batchIO) read(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(sizes), len(from), len(b.hs))
	for i := range n {
		iov := &b.iovs[i]
		iov.Base = unsafe.SliceData(bufs[i])
		iov.SetLen(len(bufs[i]))
		h := &b.hs[i]
		h.Len = 0
		h.Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrInet6, Iov: iov}
		h.Hdr.SetIovlen(1)
	}
	cnt, err := b.do(unix.SYS_RECVMMSG, n)
	for i := range cnt {
		sizes[i] = int(b.hs[i].Len)
		from[i] = b.addr(i)
	}
	return cnt, err
}

// write sends bufs[i], after prefix if that is not empty, to to[i] (to[0]
// for all if to has one element), up to maxBatch of them, with one
// sendmmsg, waiting for room in the socket's buffer. It returns how many it
// sent, the first ones, and, if it sent none, why the first was refused.
func (b *batchIO) write(prefix []byte, bufs [][]byte, to []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(b.hs))
	if len(to) > 1 {
		n = min(n, len(to))
	}
	for i := range n {
		iovs := b.iovs[2*i : 2*i+2]
		nv := 0
		if len(prefix) > 0 {
			iovs[nv].Base = unsafe.SliceData(prefix)
			iovs[nv].SetLen(len(prefix))
			nv++
		}
		iovs[nv].Base = unsafe.SliceData(bufs[i])
		iovs[nv].SetLen(len(bufs[i]))
		nv++
		dst := to[0]
		if len(to) > 1 {
			dst = to[i]
		}
		h := &b.hs[i]
		h.Len = 0
		h.Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: b.putAddr(i, dst), Iov: &iovs[0]}
		h.Hdr.SetIovlen(nv)
	}
	return b.do(unix.SYS_SENDMMSG, n)
}

// do makes the call trap on the first n messages of b.hs.
func (b *batchIO) do(trap uintptr, n int) (int, error) {
	if n == 0 {
		return 0, nil
	}
	b.trap, b.n, b.cnt, b.errno = trap, n, 0, 0
	var err error
	if trap == unix.SYS_RECVMMSG {
		err = b.rc.Read(b.fn)
	} else {
		err = b.rc.Write(b.fn)
	}
	if err != nil {
		return 0, err
	}
	if b.errno != 0 {
		name := "sendmmsg"
		if trap == unix.SYS_RECVMMSG {
			name = "recvmmsg"
		}
		return 0, os.NewSyscallError(name, b.errno)
	}
	return b.cnt, nil
}

// call is b.fn, run by the RawConn with the socket: false asks it to wait
// until the socket is ready.
func (b *batchIO) call(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(b.trap, fd, uintptr(unsafe.Pointer(&b.hs[0])), uintptr(b.n), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.cnt, b.errno = int(r), e
		return true
	}
}

// addr returns the address recvmmsg put in names[i]: on an IPv6 socket, an
// IPv4 source is IPv4-mapped, as net.UDPConn returns it.
func (b *batchIO) addr(i int) netip.AddrPort {
	sa := &b.names[i]
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(raw[2:4])
	switch sa.Family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// putAddr writes ap into names[i] in the socket's family, and returns its
// length. An IPv6 address for an IPv4 socket is written as such, for the
// kernel to refuse.
func (b *batchIO) putAddr(i int, ap netip.AddrPort) uint32 {
	sa := &b.names[i]
	*sa = unix.RawSockaddrInet6{}
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	binary.BigEndian.PutUint16(raw[2:4], ap.Port())
	a := ap.Addr()
	if b.family == unix.AF_INET && a.Unmap().Is4() {
		sa.Family = unix.AF_INET
		v4 := a.Unmap().As4()
		copy(raw[4:8], v4[:])
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Addr = a.As16()
	if z := a.Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	return unix.SizeofSockaddrInet6
}

// zoneIndex returns the interface index of an IPv6 zone, which is either
// an index or an interface name.
func zoneIndex(zone string) uint32 {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
