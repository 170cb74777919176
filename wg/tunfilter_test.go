package wg

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/wire-mesh/wire/filter"
)

// udpPacket is an IPv4 UDP datagram from src:sport to dst:dport.
func udpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	p := make([]byte, 20+8+5)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:], src.AsSlice())
	copy(p[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], 8+5)
	copy(p[28:], "hello")
	return p
}

// through sends pkt into from's TUN until it comes out of to's, and
// returns the other packets that came out of to's before it.
func through(t *testing.T, from, to *node, pkt []byte) [][]byte {
	t.Helper()
	var others [][]byte
	deadline := time.After(30 * time.Second)
	for {
		select {
		case from.tun.Outbound <- pkt:
		case <-deadline:
			t.Fatalf("%x never went from %v to %v", pkt, from.addr, to.addr)
		}
		wait := time.After(200 * time.Millisecond)
		for waiting := true; waiting; {
			select {
			case got := <-to.got:
				if bytes.Equal(got, pkt) {
					return others
				}
				others = append(others, got)
			case <-wait:
				waiting = false
			case <-deadline:
				t.Fatalf("%x never went from %v to %v", pkt, from.addr, to.addr)
			}
		}
	}
}

// TestUserspaceFilter runs two engines over loopback, b with a filter
// that lets a send only to UDP port 53: a's other packets are dropped (a
// packet sent after them arrives, and they never do), b's own flows get
// their answers, a change of rules applies at once, and no filter lets
// everything through.
func TestUserspaceFilter(t *testing.T) {
	a, b := newNode(t, "10.99.0.1"), newNode(t, "10.99.0.2")
	if err := a.Set(a.config(true, b)); err != nil {
		t.Fatal(err)
	}
	cfgB := b.config(false, a)
	cfgB.Filter = filter.Rules{a.addr: {{Proto: filter.UDP, Ports: filter.PortRange{First: 53, Last: 53}}}}
	if err := b.Set(cfgB); err != nil {
		t.Fatal(err)
	}
	through(t, a, b, udpPacket(a.addr, b.addr, 1, 53)) // the tunnel is up
	settle(b)

	denied := [][]byte{udpPacket(a.addr, b.addr, 5353, 54), tuntest.Ping(b.addr, a.addr), udpPacket(a.addr, b.addr, 7000, 6000)}
	for _, p := range denied {
		a.tun.Outbound <- p
	}
	// Packets from a peer come out in the order it sent them.
	noneOf(t, denied, through(t, a, b, udpPacket(a.addr, b.addr, 2, 53)))

	through(t, b, a, udpPacket(b.addr, a.addr, 6000, 7000)) // b opens a flow
	through(t, a, b, udpPacket(a.addr, b.addr, 7000, 6000)) // and gets answers

	cfgB.Filter[a.addr] = append(cfgB.Filter[a.addr], filter.Allow{Proto: filter.ICMP})
	if err := b.Set(cfgB); err != nil {
		t.Fatal(err)
	}
	through(t, a, b, tuntest.Ping(b.addr, a.addr))

	cfgB.Filter = nil
	if err := b.Set(cfgB); err != nil {
		t.Fatal(err)
	}
	through(t, a, b, denied[0])
}

// settle waits until nothing has come out of n's TUN for a while: the
// copies of packets sent while the tunnel came up, which would fill the
// drain's buffer.
func settle(n *node) {
	for {
		select {
		case <-n.got:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// noneOf fails t if a packet of denied is among got.
func noneOf(t *testing.T, denied, got [][]byte) {
	t.Helper()
	for _, g := range got {
		for _, d := range denied {
			if bytes.Equal(g, d) {
				t.Errorf("received %x, which the filter forbids", g)
			}
		}
	}
}

// nullTUN is a TUN device that takes every packet and gives none.
type nullTUN struct{ tun.Device }

func (nullTUN) Write(bufs [][]byte, _ int) (int, error) { return len(bufs), nil }

// BenchmarkFilteredWrite measures what the filter adds to a TUN write of
// a batch of packets, per packet: nothing without rules, and the cost of
// Inbound with rules (each packet allowed by them; one in eight dropped).
func BenchmarkFilteredWrite(b *testing.B) {
	src, dst := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	rules := filter.Rules{src: {{Proto: filter.UDP, Ports: filter.PortRange{First: 53, Last: 53}}}}
	const offset = 16
	bufs := make([][]byte, 64)
	for i := range bufs {
		port := uint16(53)
		if i%8 == 7 {
			port = 54
		}
		bufs[i] = append(make([]byte, offset), udpPacket(src, dst, uint16(1000+i), port)...)
	}
	for _, c := range []struct {
		name  string
		rules filter.Rules
	}{{"none", nil}, {"rules", rules}} {
		b.Run(c.name, func(b *testing.B) {
			f := filter.New()
			f.SetRules(c.rules)
			dev := &filteredTUN{Device: nullTUN{}, filter: f}
			b.ReportAllocs()
			for b.Loop() {
				dev.Write(bufs, offset)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bufs)), "ns/packet")
		})
	}
}
