package filter

import "testing"

// FuzzInbound feeds arbitrary bytes to a filter with rules, as a packet
// this node sends, as one it receives, and as the original packet inside
// an ICMP error it receives: nothing panics, and without rules everything
// passes. The seeds are in testdata/fuzz/FuzzInbound.
func FuzzInbound(f *testing.F) {
	f.Fuzz(func(t *testing.T, pkt []byte) {
		flt, _ := newTestFilter(testRules())
		flt.Outbound(pkt)
		flt.Inbound(pkt)
		flt.Inbound(ip4(server, me, protoICMP, 0, append([]byte{icmpUnreachable, 4, 0, 0, 0, 0, 5, 0}, pkt...)))
		if !New().Inbound(pkt) {
			t.Error("a filter without rules dropped the packet")
		}
	})
}
