package relay

import (
	"encoding/binary"
	"net/netip"
)

// inboxLen is how many messages Receive reads with one system call where
// it batches (Linux): with GRO, each holds up to 64 datagrams.
const inboxLen = 8

// framed is the segment size of a message that holds a Stream's frames,
// each after its length, as the stream carries them.
const framed = -1

// An Inbox holds what one Receive read: the packets the relay sent to
// this node, in the buffers the kernel wrote them to, which Next hands
// out one by one. Handing an Inbox to another goroutine hands it the
// packets without a copy.
type Inbox struct {
	bufs  [inboxLen][]byte // room for a datagram, or frames; made when first read into
	sizes [inboxLen]int
	segs  [inboxLen]int
	from  [inboxLen]netip.AddrPort
	n     int            // messages read
	relay netip.AddrPort // the only source taken
	data  int            // packets for Next, of all it has
	at    cursor         // the next datagram
}

// cursor is where a datagram is in an Inbox: the message, and the offset
// in it.
type cursor struct{ msg, off int }

// NewInbox returns an empty Inbox.
func NewInbox() *Inbox { return new(Inbox) }

// buffers returns the first n buffers, made if they are not yet.
func (in *Inbox) buffers(n int) [][]byte {
	for i := range n {
		if in.bufs[i] == nil {
			in.bufs[i] = make([]byte, 2+maxFrame)
		}
	}
	return in.bufs[:n]
}

// Len is how many packets the last Receive read: Next returns as many.
func (in *Inbox) Len() int { return in.data }

// Next returns the next packet in the Inbox, and the VPN IP of the node
// that sent it, or false if none is left. The packet is valid until the
// Inbox is read into again.
func (in *Inbox) Next() (payload []byte, peer netip.Addr, ok bool) {
	for {
		b, from, ok := in.datagram()
		if !ok {
			return nil, netip.Addr{}, false
		}
		if unmap(from) != in.relay {
			continue
		}
		if peer, payload, err := ParseData(b); err == nil {
			return payload, peer, true
		}
	}
}

// datagram returns the next datagram in the Inbox, and its source, if
// there is one left.
func (in *Inbox) datagram() (b []byte, from netip.AddrPort, ok bool) {
	at := &in.at
	if at.msg >= in.n {
		return nil, netip.AddrPort{}, false
	}
	m := in.bufs[at.msg][:in.sizes[at.msg]]
	start, end := at.off, len(m)
	switch seg := in.segs[at.msg]; {
	case seg == framed && end-start >= 2:
		start += 2
		end = min(start+int(binary.BigEndian.Uint16(m[start-2:])), end)
	case seg > 0:
		end = min(start+seg, end)
	}
	b, from = m[start:end], in.from[at.msg]
	if at.off = end; at.off >= len(m) {
		*at = cursor{at.msg + 1, 0}
	}
	return b, from, true
}

// Receive reads into in what the relay sent to this node: at least one
// packet, and more if they are waiting (on Linux, several messages with
// one system call, each of up to 64 datagrams with GRO). Datagrams that
// are not from the relay, or not DATA, are read and discarded;
// HELLO-ACKs are passed to Hello. Only one goroutine may call Receive or
// ReadFrom at a time.
func (c *Conn) Receive(in *Inbox) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if err := c.read(in); err != nil {
			return err
		}
		if c.sort(in) {
			return nil
		}
	}
}

// read reads into in from the socket.
func (c *Conn) read(in *Inbox) error {
	in.n, in.relay, in.data, in.at = 0, c.cfg.Relay, 0, cursor{}
	if c.reader != nil { // which turned GRO on: only it knows the segments
		n, err := c.reader.read(in.buffers(inboxLen), in.sizes[:], in.segs[:], in.from[:])
		in.n = n
		return err
	}
	if s, ok := c.pc.(*Stream); ok { // as many frames as have come
		for ; in.n < inboxLen; in.n++ {
			n, err := s.readFrames(in.buffers(in.n + 1)[in.n], in.n == 0)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			in.sizes[in.n], in.segs[in.n], in.from[in.n] = n, framed, s.remote
		}
		return nil
	}
	n, from, err := c.pc.ReadFromUDPAddrPort(in.buffers(1)[0])
	if err != nil {
		return err
	}
	in.n, in.sizes[0], in.segs[0], in.from[0] = 1, n, n, from
	return nil
}

// sort passes the relay's control messages in in to Hello, counts the
// packets for Next, and says whether there are any.
func (c *Conn) sort(in *Inbox) bool {
	for {
		b, from, ok := in.datagram()
		if !ok {
			break
		}
		if unmap(from) != c.cfg.Relay {
			continue
		}
		if _, _, err := ParseData(b); err == nil {
			in.data++
			continue
		}
		c.control(b)
	}
	in.at = cursor{}
	return in.data > 0
}

// ReadFrom reads the next packet relayed to this node into buf, and
// returns its length and the VPN IP of the node that sent it. Longer
// packets than buf are truncated. It reads as Receive does, and keeps
// what it read but has not returned for the next call. Only one goroutine
// may call Receive or ReadFrom at a time.
func (c *Conn) ReadFrom(buf []byte) (n int, peer netip.Addr, err error) {
	if c.in == nil {
		c.in = NewInbox()
	}
	for {
		if payload, peer, ok := c.in.Next(); ok {
			return copy(buf, payload), peer, nil
		}
		if err := c.Receive(c.in); err != nil {
			return 0, netip.Addr{}, err
		}
	}
}
