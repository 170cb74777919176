package relay

import (
	"encoding/binary"
	"errors"
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
// allocates nothing.
//
// Where the kernel offers it, a batch is also segmented: write hands the
// kernel runs of datagrams to one address as one message of equal-sized
// segments (UDP_SEGMENT, generic segmentation offload), and a socket read
// with GRO on (enableGRO) gets runs of datagrams from one address as one
// message (UDP_GRO). Either way such a run crosses the network stack, and
// every veth, bridge and NAT on the way, once instead of per datagram,
// which is where a relayed packet's CPU went. A batchIO is not safe for
// concurrent use.
type batchIO struct {
	rc     syscall.RawConn
	family uint16 // the socket's: AF_INET or AF_INET6
	hs     []unix.Mmsghdr
	iovs   []unix.Iovec // write: two per datagram, an optional prefix and the buffer
	names  []unix.RawSockaddrInet6
	oob    []byte // a control message's room per message: its segment size
	runs   []int  // write: how many datagrams each message carries
	gso    bool   // write segments; off if the kernel cannot
	gro    bool   // read may return segmented messages

	// the call in progress, for fn
	trap  uintptr
	n     int
	cnt   int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

const (
	// maxSegments is how many datagrams one segmented message carries at
	// most: the kernel's UDP_MAX_SEGMENTS before Linux 6.9.
	maxSegments = 64
	// maxSegmented is how many bytes of UDP payload one segmented message
	// carries at most: an IP packet's less the IPv6 and UDP headers.
	maxSegmented = 65_535 - 40 - 8
)

// oobSpace is a message's room for one control message with an int.
var oobSpace = unix.CmsgSpace(4)

// newBatchIO returns a batchIO for c of up to maxBatch messages a call, or
// nil if c's socket cannot be used so.
func newBatchIO(c *net.UDPConn) *batchIO {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var domain int
	var serr, gsoErr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		_, gsoErr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT) // Linux 4.18 or later
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
		iovs:   make([]unix.Iovec, 2*maxWrite),
		names:  make([]unix.RawSockaddrInet6, maxBatch),
		oob:    make([]byte, maxBatch*oobSpace),
		runs:   make([]int, maxBatch),
		gso:    gsoErr == nil,
	}
	b.fn = b.call
	return b
}

// enableGRO asks the kernel to coalesce the datagrams the socket receives
// (Linux 5.0 or later), and says whether it will: from then on read's
// callers must split what it returns into segments. It turns GRO on for
// the socket, not only for b: every reader of it must split.
func (b *batchIO) enableGRO() bool {
	var serr error
	if err := b.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	b.gro = true
	return true
}

// read reads up to min(len(bufs), maxBatch) messages, waiting for the
// first, into bufs, and sets sizes, segs and from for each. It returns how
// many it read. Message i is bufs[i][:sizes[i]]: if GRO is on, datagrams
// of segs[i] bytes each, the last perhaps shorter (see segment), else one
// datagram, and segs[i] == sizes[i]. sizes, segs and from must be as long
// as bufs; bufs of 64 KiB hold any message.
func (b *batchIO) read(bufs [][]byte, sizes, segs []int, from []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(sizes), len(segs), len(from), len(b.hs))
	for i := range n {
		iov := &b.iovs[i]
		iov.Base = unsafe.SliceData(bufs[i])
		iov.SetLen(len(bufs[i]))
		h := &b.hs[i]
		h.Len = 0
		h.Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrInet6, Iov: iov}
		h.Hdr.SetIovlen(1)
		if b.gro {
			h.Hdr.Control = &b.oob[i*oobSpace]
			h.Hdr.SetControllen(oobSpace)
		}
	}
	cnt, err := b.do(unix.SYS_RECVMMSG, n)
	for i := range cnt {
		h := &b.hs[i]
		sizes[i] = int(h.Len)
		segs[i] = sizes[i]
		if b.gro {
			if seg := groSize(b.oob[i*oobSpace : i*oobSpace+int(h.Hdr.Controllen)]); seg > 0 {
				segs[i] = seg
			}
		}
		from[i] = b.addr(i)
	}
	return cnt, err
}

// groSize returns the segment size that the control messages oob carry,
// or 0 if they carry none.
func groSize(oob []byte) int {
	const align = int(unsafe.Sizeof(uintptr(0))) // a cmsghdr's, as the kernel's CMSG_ALIGN
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		oob = oob[min((l+align-1)&^(align-1), len(oob)):]
	}
	return 0
}

// write sends bufs[i], after prefix if that is not empty, to to[i] (to[0]
// for all if to has one element), up to maxWrite of them, with one
// sendmmsg, waiting for room in the socket's buffer. It returns how many it
// sent, the first ones, and, if it sent none, why the first was refused.
func (b *batchIO) write(prefix []byte, bufs [][]byte, to []netip.AddrPort) (int, error) {
	sent, err := b.send(prefix, bufs, to, b.gso)
	if sent == 0 && err != nil && b.runs[0] > 1 {
		// The kernel refused a segmented message: for all of it (EIO: the
		// device cannot checksum for us, so it never will), or for one of
		// its datagrams (too long for the path, say). Send them one by
		// one, for only that one to fail.
		if errors.Is(err, unix.EIO) {
			b.gso = false
		}
		return b.send(prefix, bufs, to, false)
	}
	return sent, err
}

// send is write, segmenting runs of datagrams if gso.
func (b *batchIO) send(prefix []byte, bufs [][]byte, to []netip.AddrPort, gso bool) (int, error) {
	n := min(len(bufs), maxWrite)
	if len(to) > 1 {
		n = min(n, len(to))
	}
	dst := func(i int) netip.AddrPort {
		if len(to) > 1 {
			return to[i]
		}
		return to[0]
	}
	msgs := 0
	for i := 0; i < n && msgs < len(b.hs); msgs++ {
		j := i + 1 // the message carries bufs[i:j]
		size := len(prefix) + len(bufs[i])
		if gso {
			for total := size; j < n && j-i < maxSegments && dst(j) == dst(i); j++ {
				next := len(prefix) + len(bufs[j])
				if next > size || total+next > maxSegmented || next == 0 {
					break
				}
				total += next
				if next < size { // only the last segment may be shorter
					j++
					break
				}
			}
		}
		iovs := b.iovs[2*i : 2*j]
		nv := 0
		for _, buf := range bufs[i:j] {
			if len(prefix) > 0 {
				iovs[nv].Base = unsafe.SliceData(prefix)
				iovs[nv].SetLen(len(prefix))
				nv++
			}
			iovs[nv].Base = unsafe.SliceData(buf)
			iovs[nv].SetLen(len(buf))
			nv++
		}
		h := &b.hs[msgs]
		h.Len = 0
		h.Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[msgs])), Namelen: b.putAddr(msgs, dst(i)), Iov: &iovs[0]}
		h.Hdr.SetIovlen(nv)
		if j-i > 1 {
			oob := b.oob[msgs*oobSpace : msgs*oobSpace+unix.CmsgSpace(2)]
			c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
			h.Hdr.Control = &oob[0]
			h.Hdr.SetControllen(len(oob))
		}
		b.runs[msgs] = j - i
		i = j
	}
	cnt, err := b.do(unix.SYS_SENDMMSG, msgs)
	sent := 0
	for _, r := range b.runs[:cnt] {
		sent += r
	}
	return sent, err
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
