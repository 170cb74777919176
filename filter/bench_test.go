package filter

import (
	"sync/atomic"
	"testing"
)

// BenchmarkInbound measures Inbound per packet: without rules (the cost
// when the mesh has no policy), for a reply to a flow of this node's, for
// a packet the rules allow, and for one they drop.
func BenchmarkInbound(b *testing.B) {
	cases := []struct {
		name  string
		rules Rules
		pkt   []byte
	}{
		{"no rules", nil, udpIn(server, 5000, 6000)},
		{"reply", testRules(), udpIn(server, 5000, 6000)},
		{"allowed", testRules(), tcpIn(admin, 50000, 22, tcpACK)},
		{"dropped", testRules(), tcpIn(admin, 50000, 23, tcpACK)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := New()
			f.SetRules(c.rules)
			f.Outbound(udpOut(server, 6000, 5000))
			b.ReportAllocs()
			for b.Loop() {
				f.Inbound(c.pkt)
			}
		})
	}
}

// BenchmarkOutbound measures Outbound per packet of a known flow, the
// common case, without rules and with, and from parallel goroutines each
// with its own flow.
func BenchmarkOutbound(b *testing.B) {
	for _, rules := range []Rules{nil, testRules()} {
		name := map[bool]string{true: "no rules", false: "known flow"}[rules == nil]
		b.Run(name, func(b *testing.B) {
			f := New()
			f.SetRules(rules)
			pkt := tcpOut(server, 40000, 80, tcpACK)
			f.Outbound(tcpOut(server, 40000, 80, tcpSYN))
			b.ReportAllocs()
			for b.Loop() {
				f.Outbound(pkt)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		f := New()
		f.SetRules(testRules())
		var flows atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			pkt := udpOut(server, 6000, uint16(flows.Add(1))) // a flow of its own
			for pb.Next() {
				f.Outbound(pkt)
			}
		})
	})
}
