package wg

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/filter"
)

// firewall enforces Config.Filter for the kernel engine, whose packets
// never pass through wire.
type firewall interface {
	// set enforces rules; nil removes the filter, and what a run that
	// crashed may have left of it.
	set(rules filter.Rules) error
	// close removes the filter if this firewall put it there.
	close() error
}

// nftTable is wire's table in nftables: one per network namespace, as
// there is one wire daemon per namespace.
var nftTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: "wire"}

// nftFirewall enforces Config.Filter in nftables, on what comes in from
// the WireGuard interface to this node:
//
//	table inet wire {
//		chain input { type filter hook input priority filter; policy accept; iifname "wire0" jump mesh }
//		chain mesh {
//			meta nfproto != ipv4 drop
//			ct direction reply accept
//			ct state related accept
//			ip saddr 10.99.0.2 tcp dport 22 accept
//			ip saddr 10.99.0.2 udp dport 5000-5010 accept
//			ip saddr 10.99.0.2 icmp type != echo-reply icmp type != destination-unreachable ... accept
//			drop
//		}
//	}
//
// The packets of flows this node opened are conntrack's reply direction,
// and pass; those of flows a peer opened are the original direction, and
// meet the rules on every packet, so a change of rules that forbids a
// connection stops it at once. The rules need nf_tables and, for ct,
// nft_ct and nf_conntrack.
type nftFirewall struct {
	iface     string
	ns        namespace
	log       *slog.Logger
	installed bool // this firewall put the table there
}

var _ firewall = (*nftFirewall)(nil)

func (n *nftFirewall) set(rules filter.Rules) error {
	if rules == nil {
		return n.remove()
	}
	return n.install(rules)
}

func (n *nftFirewall) close() error {
	if !n.installed {
		return nil
	}
	return n.remove()
}

// conn opens nftables in the engine's namespace.
func (n *nftFirewall) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if n.ns.ok {
		opts = append(opts, nftables.WithNetNSFd(int(n.ns.handle)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("wg: open nftables: %w", err)
	}
	return c, nil
}

// install replaces the table with one for rules, in one transaction: the
// old rules hold until the new ones do.
func (n *nftFirewall) install(rules filter.Rules) error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	c.AddTable(nftTable) // so that deleting it cannot fail
	c.DelTable(nftTable)
	c.AddTable(nftTable)
	policy := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: nftTable, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	mesh := c.AddChain(&nftables.Chain{Name: "mesh", Table: nftTable})
	c.AddRule(&nftables.Rule{Table: nftTable, Chain: input, Exprs: fromInterface(n.iface, mesh.Name)})
	for _, exprs := range meshRules(rules.Sources()) {
		c.AddRule(&nftables.Rule{Table: nftTable, Chain: mesh, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("wg: program the packet filter for %s in nftables: %w (the kernel needs nf_tables, nft_ct and nf_conntrack; or use the userspace engine)", n.iface, err)
	}
	n.installed = true
	n.log.Debug("packet filter programmed in nftables", "table", "inet wire", "sources", len(rules))
	return nil
}

// remove deletes the table if it is there. Unless this firewall put it
// there, failing to is only logged: nftables may be missing altogether,
// and a table left behind filters more, not less.
func (n *nftFirewall) remove() error {
	err := n.deleteTable()
	switch {
	case err == nil:
		n.installed = false
	case n.installed:
		return err
	case nftUnavailable(err):
		n.log.Debug("no nftables here, so no packet filter an earlier run left", "err", err)
	default:
		n.log.Warn("cannot check nftables for a packet filter an earlier run left", "err", err)
	}
	return nil
}

// nftUnavailable says whether err means the kernel has no nftables (or
// cannot load it).
func nftUnavailable(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)
}

func (n *nftFirewall) deleteTable() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	if _, err := c.ListTableOfFamily(nftTable.Name, nftTable.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("wg: look for table inet %s in nftables: %w", nftTable.Name, err)
	}
	c.DelTable(nftTable)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("wg: remove the packet filter (table inet %s) from nftables: %w", nftTable.Name, err)
	}
	n.log.Debug("packet filter removed from nftables", "table", "inet wire")
	return nil
}

// fromInterface is `iifname "iface" jump chain`.
func fromInterface(iface, chain string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, iface)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// meshRules are the rules of chain mesh, for the sources.
func meshRules(sources []filter.Source) [][]expr.Any {
	accept, drop := &expr.Verdict{Kind: expr.VerdictAccept}, &expr.Verdict{Kind: expr.VerdictDrop}
	rules := [][]expr.Any{
		{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}, drop},
		{&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}, accept}, // IP_CT_DIR_REPLY
		ctState(expr.CtStateBitRELATED, accept),
	}
	for _, s := range sources {
		for _, matches := range sourceMatches(s) {
			rules = append(rules, append(matches, accept))
		}
	}
	return append(rules, []expr.Any{drop})
}

// ctState is `ct state BIT verdict`.
func ctState(bit uint32, verdict expr.Any) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		verdict,
	}
}

// sourceMatches are the matches of the rules that let s in: one per port
// range, one for ICMP, one per other protocol.
func sourceMatches(s filter.Source) [][]expr.Any {
	var out [][]expr.Any
	for _, r := range s.TCP {
		out = append(out, concat(saddr(s.Addr), l4proto(filter.TCP), dport(r)))
	}
	for _, r := range s.UDP {
		out = append(out, concat(saddr(s.Addr), l4proto(filter.UDP), dport(r)))
	}
	if s.ICMP {
		out = append(out, concat(saddr(s.Addr), l4proto(filter.ICMP), icmpNotErrorOrReply()))
	}
	for _, p := range s.Protocols {
		out = append(out, concat(saddr(s.Addr), l4proto(p)))
	}
	return out
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// saddr is `ip saddr a` (with the `meta nfproto ipv4` that nft adds in
// an inet table, so that nft shows it so).
func saddr(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// l4proto is `meta l4proto p`.
func l4proto(p filter.Proto) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
	}
}

// dport is `th dport r`, nothing for every port.
func dport(r filter.PortRange) []expr.Any {
	if r == filter.AllPorts {
		return nil
	}
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	first, last := binaryutil.BigEndian.PutUint16(r.First), binaryutil.BigEndian.PutUint16(r.Last)
	if r.First == r.Last {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: first}}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: first, ToData: last}}
}

// icmpNotErrorOrReply matches the ICMP types that a ping rule lets in, as
// the userspace filter does: all but echo replies and errors (which pass
// only as conntrack's reply or related), one `icmp type != T` each.
func icmpNotErrorOrReply() []expr.Any {
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}}
	for _, t := range []byte{0, 3, 4, 5, 11, 12} { // echo reply, unreachable, quench, redirect, time exceeded, parameter problem
		out = append(out, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{t}})
	}
	return out
}
