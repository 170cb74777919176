package filter

import (
	"sync/atomic"
	"time"
)

// Filter enforces Rules on the packets a node receives over the mesh,
// for an engine that sees them (wireguard-go's TUN device). It is safe
// for concurrent use.
//
// With no rules (nil) it accepts everything and tracks nothing. With
// rules, only IPv4 passes Inbound, and a packet from a source passes if
//   - it answers a flow this node opened (as Outbound recorded it),
//   - the source's Allows match it (for ICMP: any ICMP or Any Allow lets
//     the source ping, whatever its ports),
//   - it is an ICMP error (or redirect) about a packet of a flow this node
//     opened, or of one the rules let in (path MTU discovery needs them),
//   - or it is a fragment other than the first: the first carries the
//     ports and is filtered, and without it nothing reassembles.
//
// Flows that a peer opens are checked against the rules on every packet,
// so a change of rules that forbids them stops them at once. The flows
// this node opens are tracked, and survive changes of rules: a TCP
// connection from its SYN, a UDP flow from its first datagram, a ping
// from its echo request. (A UDP flow the peer began is remembered as the
// peer's, so that this node's answers do not make it this node's.) Other
// protocols are not tracked: they pass only as the rules allow. The
// table of flows is bounded (see MaxFlows and the timeouts).
//
// A TCP connection open before the filter was turned on has no SYN on
// record: its answers pass only if the rules allow them.
type Filter struct {
	rules atomic.Pointer[ruleSet]
	flows conntrack
}

// New returns a Filter with no rules: it accepts everything.
func New() *Filter {
	return &Filter{flows: conntrack{clock: monotonic}}
}

var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// SetRules replaces the rules at once, for the packets that follow; the
// flows this node opened stay tracked. Nil turns the filter off and
// forgets them.
func (f *Filter) SetRules(r Rules) {
	if r == nil {
		f.rules.Store(nil)
		f.flows.clear()
		return
	}
	f.rules.Store(compile(r))
}

// Enabled says whether the filter has rules. Without, Inbound and
// Outbound do nothing, and a caller may skip them.
func (f *Filter) Enabled() bool { return f.rules.Load() != nil }

// Inbound says whether pkt, an IP packet received over the mesh, may go
// on to this node.
func (f *Filter) Inbound(pkt []byte) bool {
	rs := f.rules.Load()
	if rs == nil {
		return true
	}
	p, ok := parse(pkt)
	switch {
	case !ok:
		return false
	case p.later:
		return true
	}
	switch p.proto {
	case protoTCP, protoUDP:
		return f.inboundPorts(rs, &p)
	case protoICMP:
		return f.inboundICMP(rs, &p)
	}
	return rs.allowsProto(p.src, p.proto)
}

func (f *Filter) inboundPorts(rs *ruleSet, p *packet) bool {
	k := inboundKey(p)
	o, known := f.flows.touch(k, p.isClosing())
	if o == thisNode {
		return true
	}
	if !rs.allowsPort(p.src, p.proto, p.dport) {
		return false
	}
	if !known && p.proto == protoUDP {
		// So that this node's answers do not make the flow its own.
		f.flows.add(k, peer)
	}
	return true
}

func (f *Filter) inboundICMP(rs *ruleSet, p *packet) bool {
	switch {
	case p.icmpType == icmpEchoReply:
		o, _ := f.flows.touch(inboundKey(p), false)
		return o == thisNode
	case p.isICMPError():
		return f.related(rs, p)
	}
	return rs.allowsICMP(p.src)
}

// related says whether p, an ICMP error, is about a packet this node
// sent in a flow it opened, or in answer to one the rules let in.
func (f *Filter) related(rs *ruleSet, p *packet) bool {
	e, ok := p.embedded()
	if !ok {
		return false
	}
	if fl, _, ok := f.flows.find(outboundKey(&e)); ok && fl.opener == thisNode {
		return true
	}
	switch e.proto {
	case protoTCP, protoUDP:
		return rs.allowsPort(e.dst, e.proto, e.sport)
	}
	return e.icmpType == icmpEchoReply && rs.allowsICMP(e.dst)
}

// Outbound records pkt, an IP packet this node sends over the mesh, if it
// opens a flow or belongs to one, so that the answers pass Inbound.
func (f *Filter) Outbound(pkt []byte) {
	if f.rules.Load() == nil {
		return
	}
	p, ok := parse(pkt)
	if !ok || p.later {
		return
	}
	switch {
	case p.proto == protoTCP:
		f.outboundTCP(&p)
	case p.proto == protoUDP, p.proto == protoICMP && p.icmpType == icmpEchoRequest:
		f.outboundFlow(outboundKey(&p))
	}
}

// outboundTCP records a connection from its SYN, which is sure to be this
// node's; its later packets keep it alive, and its FIN or RST ends it.
func (f *Filter) outboundTCP(p *packet) {
	k := outboundKey(p)
	if p.isOpening() {
		f.flows.add(k, thisNode)
		return
	}
	f.flows.touch(k, p.isClosing())
}

// outboundFlow keeps k alive, and records it as this node's if it is new.
func (f *Filter) outboundFlow(k flowKey) {
	if _, ok := f.flows.touch(k, false); !ok {
		f.flows.add(k, thisNode)
	}
}

func outboundKey(p *packet) flowKey {
	return flowKey{local: p.src, remote: p.dst, lport: p.sport, rport: p.dport, proto: uint32(p.proto)}
}

func inboundKey(p *packet) flowKey {
	return flowKey{local: p.dst, remote: p.src, lport: p.dport, rport: p.sport, proto: uint32(p.proto)}
}

// ruleSet is Rules made ready for matching.
type ruleSet struct {
	bySrc map[[4]byte]*Source
}

func compile(r Rules) *ruleSet {
	srcs := r.Sources()
	rs := &ruleSet{bySrc: make(map[[4]byte]*Source, len(srcs))}
	for i := range srcs {
		rs.bySrc[srcs[i].Addr.As4()] = &srcs[i]
	}
	return rs
}

func (rs *ruleSet) allowsPort(src [4]byte, proto uint8, port uint16) bool {
	s := rs.bySrc[src]
	return s != nil && s.allowsPort(proto, port)
}

func (rs *ruleSet) allowsICMP(src [4]byte) bool {
	s := rs.bySrc[src]
	return s != nil && s.ICMP
}

func (rs *ruleSet) allowsProto(src [4]byte, proto uint8) bool {
	s := rs.bySrc[src]
	return s != nil && s.allowsProto(proto)
}
