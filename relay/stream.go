package relay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// A node on a network that blocks UDP reaches the relay over a stream
// instead: a TLS connection to the coordination server's HTTPS port,
// authenticated as the control channel is and then handed to the relay
// (see Server.ServeStream). The messages are the datagrams' own, each
// framed by its length:
//
//	frame   length(2, big-endian) | relay message
//
// A Stream is such a connection seen as a socket with one peer: it reads
// and writes whole messages, so that a Conn (on the node) and the Server
// (at the relay) use it as they use a UDP socket. Writes never wait on the
// network: frames queue for a writer that sends as many as are waiting at
// once, and a frame that finds the queue full is dropped, as a datagram
// would be, so that a slow stream holds up neither WireGuard nor the
// relay's other nodes.
type Stream struct {
	rw     io.ReadWriteCloser
	r      *bufio.Reader
	remote netip.AddrPort // the address its messages come from

	queue   chan *[]byte
	frames  sync.Pool // *[]byte, a frame's room
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	err     error  // why it closed
	dropped uint64 // frames that found the queue full, under mu
}

// StreamQueue is how many frames wait for a stream's writer at most: at
// 1,500 bytes, some 0.75 MB, half a second of a 12 Mbit/s link.
const StreamQueue = 512

// maxFrame is the longest message a frame carries: its length has 16 bits.
const maxFrame = 1<<16 - 1

// NewStream returns the stream over rw, whose messages come from remote
// (the relay's address, as the node's Conn is configured with, or the
// address the Server gives the stream). It owns rw.
func NewStream(rw io.ReadWriteCloser, remote netip.AddrPort) *Stream {
	s := &Stream{
		rw:     rw,
		r:      bufio.NewReaderSize(rw, 64<<10),
		remote: remote,
		queue:  make(chan *[]byte, StreamQueue),
		done:   make(chan struct{}),
	}
	s.frames.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	go s.write()
	return s
}

// ReadFromUDPAddrPort reads the next message into b (truncated if it is
// longer, as a datagram would be) and says it came from the remote
// address.
func (s *Stream) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return 0, netip.AddrPort{}, s.readErr(err)
	}
	size := int(binary.BigEndian.Uint16(hdr[:]))
	n, err := io.ReadFull(s.r, b[:min(size, len(b))])
	if err == nil && size > n {
		_, err = s.r.Discard(size - n)
	}
	if err != nil {
		return 0, netip.AddrPort{}, s.readErr(err)
	}
	return n, s.remote, nil
}

// readFrames reads whole frames, their lengths included, into b, and
// returns how many bytes: first one, waiting for it if wait, then as many
// more as are already buffered and fit. b must hold a frame of maxFrame.
func (s *Stream) readFrames(b []byte, wait bool) (int, error) {
	n := 0
	for {
		if (n > 0 || !wait) && s.r.Buffered() < 2 {
			return n, nil
		}
		hdr, err := s.r.Peek(2)
		if err != nil {
			return 0, s.readErr(err)
		}
		size := 2 + int(binary.BigEndian.Uint16(hdr))
		if (n > 0 || !wait) && (s.r.Buffered() < size || n+size > len(b)) {
			return n, nil
		}
		if _, err := io.ReadFull(s.r, b[n:n+size]); err != nil {
			return 0, s.readErr(err)
		}
		n += size
	}
}

// readErr closes the stream, which a failed read ends, and says why.
func (s *Stream) readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	s.fail(fmt.Errorf("relay stream: %w", err))
	return s.Err()
}

// WriteToUDPAddrPort queues b, a relay message, to be sent; to is
// ignored: a stream has one peer. It fails only once the stream closed.
func (s *Stream) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if len(b) > maxFrame {
		return 0, fmt.Errorf("relay stream: a %d-byte message does not fit a frame", len(b))
	}
	select {
	case <-s.done:
		return 0, s.Err()
	default:
	}
	f := s.frames.Get().(*[]byte)
	*f = binary.BigEndian.AppendUint16((*f)[:0], uint16(len(b)))
	*f = append(*f, b...)
	select {
	case s.queue <- f:
	default:
		s.frames.Put(f)
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
	}
	return len(b), nil
}

// write sends the queued frames, flushing when the queue is empty, until
// the stream closes or a write fails.
func (s *Stream) write() {
	w := bufio.NewWriterSize(s.rw, 64<<10)
	for {
		var f *[]byte
		select {
		case f = <-s.queue:
		case <-s.done:
			return
		}
		_, err := w.Write(*f)
		s.frames.Put(f)
		if err == nil && len(s.queue) == 0 {
			err = w.Flush()
		}
		if err != nil {
			s.fail(fmt.Errorf("relay stream: %w", err))
			return
		}
	}
}

// fail closes the stream for the reason err, if it is not closed yet.
func (s *Stream) fail(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
		s.rw.Close()
	})
}

// Err is why the stream closed, nil while it is open.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the stream closes.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Dropped is how many messages found the queue full.
func (s *Stream) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close closes the stream; reads and writes then fail with net.ErrClosed.
func (s *Stream) Close() error {
	s.fail(net.ErrClosed)
	return nil
}

// LocalAddr is a placeholder: the stream's own address is the
// connection's, which the relay does not use.
func (s *Stream) LocalAddr() net.Addr { return streamAddr{} }

// The rest makes a Stream a net.PacketConn, as NewConn takes.

// ReadFrom is ReadFromUDPAddrPort with a net.Addr.
func (s *Stream) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := s.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo is WriteToUDPAddrPort with a net.Addr.
func (s *Stream) WriteTo(b []byte, _ net.Addr) (int, error) {
	return s.WriteToUDPAddrPort(b, netip.AddrPort{})
}

// SetReadDeadline, SetWriteDeadline and SetDeadline are not supported:
// a read under way cannot be interrupted, and writes never wait.
func (s *Stream) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (s *Stream) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }
func (s *Stream) SetDeadline(time.Time) error      { return errors.ErrUnsupported }

// streamAddr is a Stream's LocalAddr.
type streamAddr struct{}

func (streamAddr) Network() string { return "relay-stream" }
func (streamAddr) String() string  { return "relay-stream" }
