package filter

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Filter's clock that the test moves.
type fakeClock struct{ t int64 }

func (c *fakeClock) now() int64              { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t += int64(d) }

func newTestFilter(r Rules) (*Filter, *fakeClock) {
	clock := &fakeClock{t: int64(time.Hour)}
	f := New()
	f.flows.clock = clock.now
	f.SetRules(r)
	return f, clock
}

func TestNoRulesAcceptsEverything(t *testing.T) {
	f := New()
	if f.Enabled() {
		t.Error("a new Filter is enabled")
	}
	for _, p := range [][]byte{nil, {0x45}, ipv6(), tcpIn(server, 80, 40000, tcpACK), icmpIn(server, icmpEchoReply, 1)} {
		f.Outbound(p)
		if !f.Inbound(p) {
			t.Errorf("Inbound(%x) = false without rules", p)
		}
	}
	if n := f.flows.len(); n != 0 {
		t.Errorf("%d flows tracked without rules, want none", n)
	}
}

// TestInbound checks what passes from each peer, after the node sent
// what the case says.
func TestInbound(t *testing.T) {
	fragment := func(p []byte, field uint16) []byte {
		p[6], p[7] = byte(field>>8), byte(field)
		return p
	}
	tests := []struct {
		name string
		sent [][]byte // by this node first
		in   []byte
		want bool
	}{
		{"allowed tcp port", nil, tcpIn(admin, 50000, 22, tcpSYN), true},
		{"other tcp port", nil, tcpIn(admin, 50000, 23, tcpSYN), false},
		{"allowed port, no rules for the source", nil, tcpIn(server, 50000, 22, tcpSYN), false},
		{"udp port allowed for udp", nil, udpIn(admin, 50000, 53), true},
		{"udp port, over tcp", nil, tcpIn(admin, 50000, 53, tcpSYN), false},
		{"any: tcp, first of range", nil, tcpIn(admin, 50000, 8000, tcpSYN), true},
		{"any: udp, last of range", nil, udpIn(admin, 50000, 8100), true},
		{"any: above the range", nil, tcpIn(admin, 50000, 8101, tcpSYN), false},
		{"any: below the range", nil, udpIn(admin, 50000, 7999), false},
		{"any allows ping", nil, icmpIn(admin, icmpEchoRequest, 9), true},
		{"icmp allows ping", nil, icmpIn(pinger, icmpEchoRequest, 9), true},
		{"icmp allows a timestamp request", nil, icmpIn(pinger, 13, 9), true},
		{"icmp allows no tcp", nil, tcpIn(pinger, 50000, 22, tcpSYN), false},
		{"tcp only: no ping", nil, icmpIn(webOnly, icmpEchoRequest, 9), false},
		{"no rules: no ping", nil, icmpIn(server, icmpEchoRequest, 9), false},
		{"other protocol allowed", nil, ip4(tunneler, me, protoGRE, 0, []byte("gre packet")), true},
		{"other protocol not allowed", nil, ip4(admin, me, protoGRE, 0, []byte("gre packet")), false},

		{"tcp reply", [][]byte{tcpOut(server, 40000, 80, tcpSYN)}, tcpIn(server, 80, 40000, tcpSYN|tcpACK), true},
		{"tcp reply after data", [][]byte{tcpOut(server, 40000, 80, tcpSYN), tcpOut(server, 40000, 80, tcpACK)}, tcpIn(server, 80, 40000, tcpACK), true},
		{"tcp from another port", [][]byte{tcpOut(server, 40000, 80, tcpSYN)}, tcpIn(server, 81, 40000, tcpACK), false},
		{"tcp to another port", [][]byte{tcpOut(server, 40000, 80, tcpSYN)}, tcpIn(server, 80, 40001, tcpACK), false},
		{"tcp from another peer", [][]byte{tcpOut(server, 40000, 80, tcpSYN)}, tcpIn(pinger, 80, 40000, tcpACK), false},
		{"no SYN, no connection", [][]byte{tcpOut(server, 40000, 80, tcpACK)}, tcpIn(server, 80, 40000, tcpACK), false},
		{"SYN-ACK sent opens nothing", [][]byte{tcpOut(server, 40000, 80, tcpSYN|tcpACK)}, tcpIn(server, 80, 40000, tcpACK), false},
		{"unsolicited tcp", nil, tcpIn(server, 80, 40000, tcpSYN|tcpACK), false},
		{"udp reply", [][]byte{udpOut(server, 6000, 5000)}, udpIn(server, 5000, 6000), true},
		{"unsolicited udp", nil, udpIn(server, 5000, 6000), false},
		{"echo reply", [][]byte{icmpOut(server, icmpEchoRequest, 7)}, icmpIn(server, icmpEchoReply, 7), true},
		{"echo reply, other id", [][]byte{icmpOut(server, icmpEchoRequest, 7)}, icmpIn(server, icmpEchoReply, 8), false},
		{"unsolicited echo reply", nil, icmpIn(admin, icmpEchoReply, 7), false},
		{"echo reply sent opens nothing", [][]byte{icmpOut(server, icmpEchoReply, 7)}, icmpIn(server, icmpEchoRequest, 7), false},

		{"frag needed about a connection of ours", [][]byte{tcpOut(server, 40000, 80, tcpSYN)},
			errorIn(server, icmpUnreachable, tcpOut(server, 40000, 80, tcpACK)), true},
		{"time exceeded about a udp flow of ours", [][]byte{udpOut(server, 6000, 5000)},
			errorIn(server, icmpTimeExceeded, udpOut(server, 6000, 5000)), true},
		{"parameter problem about a ping of ours", [][]byte{icmpOut(server, icmpEchoRequest, 7)},
			errorIn(server, icmpParamProblem, icmpOut(server, icmpEchoRequest, 7)), true},
		{"source quench about a connection of ours", [][]byte{tcpOut(server, 40000, 80, tcpSYN)},
			errorIn(server, icmpSourceQuench, tcpOut(server, 40000, 80, tcpACK)), true},
		{"error about a flow of ours, from another peer", [][]byte{tcpOut(server, 40000, 80, tcpSYN)},
			errorIn(pinger, icmpTimeExceeded, tcpOut(server, 40000, 80, tcpACK)), true},
		{"error about no flow", nil, errorIn(server, icmpUnreachable, tcpOut(server, 40000, 80, tcpACK)), false},
		{"error about another port", [][]byte{tcpOut(server, 40000, 80, tcpSYN)},
			errorIn(server, icmpUnreachable, tcpOut(server, 40001, 80, tcpACK)), false},
		{"error about an answer to an allowed connection", nil, errorIn(admin, icmpUnreachable, tcpOut(admin, 22, 50000, tcpACK)), true},
		{"error about an answer from a port not allowed", nil, errorIn(admin, icmpUnreachable, tcpOut(admin, 23, 50000, tcpACK)), false},
		{"error about an answer to an allowed ping", nil, errorIn(pinger, icmpUnreachable, icmpOut(pinger, icmpEchoReply, 7)), true},
		{"error cut short", [][]byte{tcpOut(server, 40000, 80, tcpSYN)},
			ip4(server, me, protoICMP, 0, icmpErr(icmpUnreachable, tcpOut(server, 40000, 80, tcpACK))[:8+20+4]), false},
		{"redirect about no flow", nil, errorIn(admin, icmpRedirect, tcpOut(server, 40000, 80, tcpACK)), false},
		{"error is not allowed by icmp rules", nil, errorIn(pinger, icmpUnreachable, tcpOut(server, 40000, 80, tcpACK)), false},

		{"later fragment", nil, fragment(ip4(server, me, protoUDP, 0, []byte("more data")), 185), true},
		{"last fragment", nil, fragment(ip4(server, me, protoTCP, 0, []byte("last data")), 370), true},
		{"first fragment to an allowed port", nil, fragment(tcpIn(admin, 50000, 22, tcpACK), moreFragments), true},
		{"first fragment to a port not allowed", nil, fragment(tcpIn(admin, 50000, 23, tcpACK), moreFragments), false},
		{"first fragment too short for ports", nil, fragment(ip4(admin, me, protoTCP, 0, []byte{0, 22}), moreFragments), false},
		{"header with options", nil, withOptions(tcpIn(admin, 50000, 22, tcpSYN)), true},
		{"options, port not allowed", nil, withOptions(tcpIn(admin, 50000, 23, tcpSYN)), false},

		{"ipv6", nil, ipv6(), false},
		{"empty", nil, []byte{}, false},
		{"ip header only", nil, tcpIn(admin, 50000, 22, tcpSYN)[:20], false},
		{"total length beyond the packet", nil, tcpIn(admin, 50000, 22, tcpSYN)[:30], false},
		{"tcp header cut short", nil, ip4(admin, me, protoTCP, 0, tcpSeg(50000, 22, tcpSYN)[:12]), false},
		{"header length under 20", nil, func() []byte { p := tcpIn(admin, 50000, 22, tcpSYN); p[0] = 0x44; return p }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newTestFilter(testRules())
			for _, p := range tt.sent {
				f.Outbound(p)
			}
			if got := f.Inbound(tt.in); got != tt.want {
				t.Errorf("Inbound = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEmptyRules checks that rules with no source let only replies in.
func TestEmptyRules(t *testing.T) {
	f, _ := newTestFilter(Rules{})
	f.Outbound(udpOut(server, 6000, 5000))
	if !f.Inbound(udpIn(server, 5000, 6000)) {
		t.Error("a reply was dropped")
	}
	if f.Inbound(tcpIn(admin, 50000, 22, tcpSYN)) {
		t.Error("a connection was let in")
	}
}

// TestRulesChangeStopsConnection follows a connection a peer opened, and
// one this node opened, through a change of rules that forbids the first:
// it stops at the next packet, and the second goes on.
func TestRulesChangeStopsConnection(t *testing.T) {
	f, _ := newTestFilter(testRules())
	f.Outbound(tcpOut(server, 40000, 80, tcpSYN))
	steps := []struct {
		in   []byte
		want bool
	}{
		{tcpIn(admin, 50000, 22, tcpSYN), true},
		{tcpIn(admin, 50000, 22, tcpACK), true},
		{tcpIn(server, 80, 40000, tcpSYN|tcpACK), true},
	}
	for i, s := range steps {
		if got := f.Inbound(s.in); got != s.want {
			t.Fatalf("step %d: Inbound = %v, want %v", i, got, s.want)
		}
		f.Outbound(tcpOut(admin, 22, 50000, tcpSYN|tcpACK)) // the node answers
	}
	r := testRules()
	r[netip.MustParseAddr(admin)] = []Allow{{UDP, PortRange{53, 53}}}
	f.SetRules(r)
	if f.Inbound(tcpIn(admin, 50000, 22, tcpACK)) {
		t.Error("the connection the rules now forbid goes on")
	}
	if !f.Inbound(tcpIn(server, 80, 40000, tcpACK)) {
		t.Error("the connection this node opened stopped at the change of rules")
	}
}

// TestPeerOpenedUDP checks that this node's answers to a UDP flow a peer
// opened do not make the flow this node's: once the rules forbid it, the
// peer's next datagram is dropped.
func TestPeerOpenedUDP(t *testing.T) {
	f, _ := newTestFilter(testRules())
	if !f.Inbound(udpIn(admin, 5353, 53)) {
		t.Fatal("an allowed query was dropped")
	}
	f.Outbound(udpOut(admin, 53, 5353))
	r := testRules()
	delete(r, netip.MustParseAddr(admin))
	f.SetRules(r)
	if f.Inbound(udpIn(admin, 5353, 53)) {
		t.Error("a query the rules now forbid passed, as if the flow were this node's")
	}
}

// TestExpiry checks each protocol's idle timeout, and that traffic keeps
// a flow alive.
func TestExpiry(t *testing.T) {
	tests := []struct {
		name      string
		open      []byte // by this node
		reply     []byte
		idle      time.Duration // how long a flow lives without packets
		keepAlive []byte        // a packet that keeps the flow alive
	}{
		{"tcp", tcpOut(server, 40000, 80, tcpSYN), tcpIn(server, 80, 40000, tcpACK), TCPTimeout, tcpOut(server, 40000, 80, tcpACK)},
		{"tcp after FIN", tcpOut(server, 40000, 80, tcpSYN), tcpIn(server, 80, 40000, tcpACK), TCPClosingTimeout, tcpIn(server, 80, 40000, tcpFIN|tcpACK)},
		{"udp", udpOut(server, 6000, 5000), udpIn(server, 5000, 6000), UDPTimeout, udpOut(server, 6000, 5000)},
		{"ping", icmpOut(server, icmpEchoRequest, 7), icmpIn(server, icmpEchoReply, 7), ICMPTimeout, icmpOut(server, icmpEchoRequest, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, clock := newTestFilter(testRules())
			f.Outbound(tt.open)
			for range 3 { // the flow lives on while packets go
				clock.advance(tt.idle - 2*time.Second)
				f.Outbound(tt.keepAlive)
				f.Inbound(tt.keepAlive)
			}
			clock.advance(tt.idle - 2*time.Second)
			if !f.Inbound(tt.reply) {
				t.Fatalf("the reply was dropped before %v of silence", tt.idle)
			}
			clock.advance(tt.idle + time.Second)
			if f.Inbound(tt.reply) {
				t.Errorf("the reply passed after %v of silence", tt.idle+time.Second)
			}
		})
	}
}

// TestSYNReopens checks that a new connection on the tuple of one that
// closed gets the full timeout again.
func TestSYNReopens(t *testing.T) {
	f, clock := newTestFilter(testRules())
	f.Outbound(tcpOut(server, 40000, 80, tcpSYN))
	f.Outbound(tcpOut(server, 40000, 80, tcpRST))
	f.Outbound(tcpOut(server, 40000, 80, tcpSYN))
	clock.advance(TCPClosingTimeout + time.Minute)
	if !f.Inbound(tcpIn(server, 80, 40000, tcpACK)) {
		t.Error("the reopened connection got the closing timeout")
	}
}

// TestConntrackBounded opens far more flows than the table holds: it
// stays within MaxFlows, and the newest flows still pass.
func TestConntrackBounded(t *testing.T) {
	f, clock := newTestFilter(testRules())
	const n = 3 * MaxFlows
	for i := range n {
		f.Outbound(udpOut(server, uint16(i), uint16(i>>16)+1))
		if i%1000 == 0 {
			clock.advance(time.Millisecond)
		}
	}
	if got := f.flows.len(); got > MaxFlows {
		t.Errorf("%d flows held, want at most %d", got, MaxFlows)
	}
	last := n - 1
	if !f.Inbound(udpIn(server, uint16(last>>16)+1, uint16(last))) {
		t.Error("the newest flow was evicted")
	}
	clock.advance(UDPTimeout + time.Second) // all expired: evicted first
	f.Outbound(tcpOut(server, 40000, 80, tcpSYN))
	if !f.Inbound(tcpIn(server, 80, 40000, tcpACK)) {
		t.Error("a new flow in a table full of expired ones was lost")
	}
}

// TestNoRulesForgets checks that turning the filter off forgets the
// flows.
func TestNoRulesForgets(t *testing.T) {
	f, _ := newTestFilter(testRules())
	f.Outbound(udpOut(server, 6000, 5000))
	f.SetRules(nil)
	if n := f.flows.len(); n != 0 {
		t.Errorf("%d flows kept with the filter off", n)
	}
	f.SetRules(testRules())
	if f.Inbound(udpIn(server, 5000, 6000)) {
		t.Error("a flow from before the filter was turned off passed")
	}
}

// TestNoAllocations checks the hot path: packets of known flows, and
// packets the rules decide, allocate nothing.
func TestNoAllocations(t *testing.T) {
	f, _ := newTestFilter(testRules())
	out, reply, allowed := udpOut(server, 6000, 5000), udpIn(server, 5000, 6000), tcpIn(admin, 50000, 22, tcpACK)
	f.Outbound(out)
	allocs := testing.AllocsPerRun(1000, func() {
		f.Outbound(out)
		f.Inbound(reply)
		f.Inbound(allowed)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
}

// TestConcurrent runs packets both ways while the rules change, for the
// race detector.
func TestConcurrent(t *testing.T) {
	f := New()
	f.SetRules(testRules())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				f.Outbound(udpOut(server, uint16(g), uint16(i)))
				f.Inbound(udpIn(server, uint16(i), uint16(g)))
				f.Inbound(tcpIn(admin, uint16(i), 22, tcpSYN))
			}
		})
	}
	for range 100 {
		f.SetRules(testRules())
	}
	f.SetRules(nil)
	wg.Wait()
}
