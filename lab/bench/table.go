//go:build linux

package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// row is one metric of the table.
type row struct {
	metric, value, unit, detail string
}

// printTable writes the header, the metrics and the notes that say what
// each one is.
func printTable(w io.Writer, h host, o options, res results) {
	fmt.Fprintf(w, "wire bench\n%s\n", h)
	var rows []row
	rows = append(rows, throughputRows(res)...)
	rows = append(rows, joinRows(res)...)
	rows = append(rows, memoryRows(res)...)
	writeRows(w, rows)
	fmt.Fprintf(w, "\n%s", notes(o, res))
	fmt.Fprintf(w, "\nthe run took %v (cleanup not counted)\n", res.took.Round(time.Second))
}

func throughputRows(res results) []row {
	wire, stock, raw := medianTransfer(res.wire), medianTransfer(res.stock), medianTransfer(res.raw)
	relayed, tcpRelayed := medianTransfer(res.relayed), medianTransfer(res.tcpRelayed)
	relayCPU := func(i int) string { return seconds(sumTransfers(res.relayed).cpuPerGBOf(i)) }
	runs := func(xs []transfer) string {
		if len(xs) == 1 {
			return fmt.Sprintf("%d retransmits", xs[0].retrans)
		}
		var s []string
		for _, x := range xs {
			s = append(s, gbits(x.bps))
		}
		return "median of " + strings.Join(s, " ")
	}
	return []row{
		{"TCP n1 → n2, wire tunnel [1]", gbits(wire.bps), "Gbit/s", runs(res.wire)},
		{"TCP n1 → n2, stock wireguard-go, same path [2]", gbits(stock.bps), "Gbit/s", runs(res.stock)},
		{"  wire / stock", ratio(wire.bps, stock.bps), "", perRound(res.wire, res.stock)},
		kernelRow(),
		{"TCP n1 → n2, raw path, no tunnel [3]", gbits(raw.bps), "Gbit/s", runs(res.raw)},
		{"  wire / raw", ratio(wire.bps, raw.bps), "", perRound(res.wire, res.raw)},
		{"TCP nr1 → nr2, through the relay [10]", gbits(relayed.bps), "Gbit/s", runs(res.relayed)},
		{"  relay / direct wire", ratio(relayed.bps, wire.bps), "", perRound(res.relayed, res.wire)},
		{"CPU per GB, the relay (wire server) [10]", relayCPU(0), "s/GB", ""},
		{"CPU per GB, wire daemon nr1 (sender) [10]", relayCPU(1), "s/GB", ""},
		{"CPU per GB, wire daemon nr2 (receiver) [10]", relayCPU(2), "s/GB", ""},
		{"TCP nr1 → nt, the relay over TCP for nt [11]", gbits(tcpRelayed.bps), "Gbit/s", runs(res.tcpRelayed)},
		{"  relay over TCP / relay", ratio(tcpRelayed.bps, relayed.bps), "", perRound(res.tcpRelayed, res.relayed)},
		{"CPU per GB, the relay (wire server), over TCP [11]", seconds(sumTransfers(res.tcpRelayed).cpuPerGBOf(0)), "s/GB", ""},
		{"CPU per GB, wire daemons n1 + n2 [4]", seconds(sumTransfers(res.wire).cpuPerGB()), "s/GB", ""},
		{"CPU per GB, stock wireguard-go n1 + n2 [4]", seconds(sumTransfers(res.stock).cpuPerGB()), "s/GB", ""},
	}
}

// kernelRow is the kernel engine's throughput where this machine's kernel
// has WireGuard; where it has none, what stands instead. Kernel WireGuard
// runs here only in the VM lab, under QEMU's TCG, whose emulated CPU makes
// any figure a measure of the emulator, not of WireGuard.
func kernelRow() row {
	if _, err := os.Stat("/sys/module/wireguard"); err == nil {
		return row{"TCP n1 → n2, kernel WireGuard", "-", "", "not measured yet: run the lab with --engine kernel"}
	}
	return row{"TCP n1 → n2, kernel WireGuard", "-", "", "not measured: this kernel has no WireGuard, and under the VM lab's TCG emulation a figure would time the emulator"}
}

func joinRows(res results) []row {
	var up, server, last, prop []time.Duration
	for _, p := range res.props {
		up = append(up, p.up)
		server = append(server, p.server)
		last = append(last, p.last())
		prop = append(prop, p.last()-p.up)
	}
	return []row{
		{fmt.Sprintf("join → first ping from n1, median of %d [5]", len(res.joinToPing)), seconds(median(res.joinToPing)), "s", "runs " + list(res.joinToPing, seconds)},
		{fmt.Sprintf("  same, new node behind n4's NAT, median of %d [6]", len(res.joinShared)), seconds(median(res.joinShared)), "s", "runs " + list(res.joinShared, seconds)},
		{"join → new node prints \"wire up:\" [7]", millis(median(up)), "ms", "runs " + list(up, millis)},
		{"join → server lists it (wire status on n1) [7]", millis(median(server)), "ms", "runs " + list(server, millis)},
		{"join → every node's WireGuard has it (wire peers) [7]", millis(median(last)), "ms", "runs " + list(last, millis)},
		{"peer change propagation, median [8]", millis(median(prop)), "ms", "runs " + list(prop, millis)},
		{"peer change propagation, max [8]", millis(slices.Max(prop)), "ms", ""},
	}
}

func memoryRows(res results) []row {
	var rows []row
	for _, m := range []struct {
		what string
		mem  lab.Memory
	}{
		{fmt.Sprintf("wire daemon n1, idle, %d peers", res.peersIdle), res.idle},
		{"stock wireguard-go n1, idle, 1 peer", res.stockIdle},
		{"wire daemon n1 (sender), after iperf3", res.wire1},
		{"wire daemon n2 (receiver), after iperf3", res.wire2},
		{"stock wireguard-go n1 (sender), after iperf3", res.stock1},
		{"stock wireguard-go n2 (receiver), after iperf3", res.stock2},
		{"wire daemon n1 (sender), idle after [12]", res.wire1Idle},
		{"wire daemon n2 (receiver), idle after [12]", res.wire2Idle},
		{"stock wireguard-go n1 (sender), idle after [12]", res.stock1Idle},
		{"stock wireguard-go n2 (receiver), idle after [12]", res.stock2Idle},
	} {
		rows = append(rows,
			row{m.what + ": VmRSS [9]", mib(m.mem.RSS), "MiB", ""},
			row{m.what + ": RssAnon [9]", mib(m.mem.Anon), "MiB", ""},
			row{m.what + ": VmHWM [9]", mib(m.mem.HWM), "MiB", ""})
	}
	return rows
}

// notes are the table's footnotes.
func notes(o options, res results) string {
	return fmt.Sprintf(`The lab: namespaces on one bridge, the internet (203.0.113.0/24): the server
at 203.0.113.1; n1 behind cone NAT r1 (%s); n2 behind cone NAT r2 (%s);
n3 public; n4 behind cone NAT r3 (%s). Routers: nftables masquerade, and
unsolicited inbound dropped (LAB.md). iperf3: TCP, one stream, %d s per run,
n1 client → n2 server, %d round(s) of wire, stock, raw in that order (the median
shown); Gbit/s as the receiver counts them.
[1] n1 → n2's VPN IP over wire's embedded wireguard-go (TUN, MTU 1420), UDP
    through r1 and r2. Before the runs, n1's wire status showed n2 %s
    via %s; the server's interface carried %d bytes during
    the wire runs: the tunnel's traffic went around it.
[2] The upstream wireguard-go binary, built from the module version wire embeds,
    one process in n1 and one in n2 (TUN, MTU 1420, 10.98.0.0/24), configured over
    its UAPI socket with wgctrl; each end's endpoint is the other's router WAN
    address and listen port: the same routers, NAT traversal and veths as [1].
[3] n1 → r2's WAN address, TCP port %d forwarded by a DNAT rule on r2 to n2: the
    same namespaces and both NATs, without the tunnel (MTU 1500, GSO/GRO on veths).
[4] User + system CPU time (/proc/PID/stat) of both ends' WireGuard processes
    during the runs, per 10^9 bytes received; iperf3's own CPU is not counted.
[5] From starting wire up on a fresh node, alone behind a cone NAT of its own, to
    the first answered wire ping from n1 (polled every 100 ms, each try waiting up
    to 2 s), as TestMeshJoinToPing measures it.
[6] As [5], the fresh node behind r3, whose public port 51820 n4 already holds,
    so the NAT maps the new node's port 51820 to another.
[7] From starting wire up on a fresh node alone behind its own NAT; "every node"
    is the last of the nodes already in the mesh (4, then 5, ...) whose wire peers
    lists the new node at the public address and port its wire status reports.
    Polled every %v, each poll a wire process: resolution about ±30 ms.
[8] [7]'s last node minus the new node's "wire up:" line (printed once it has
    registered its STUN mapping): how long the server's long-poll takes to reach
    every daemon and be applied. Near zero or negative means before the line.
[9] /proc/PID/status of the process: VmRSS now, RssAnon the part of it that is
    its own (heap, stacks; the rest is resident pages of its binary and other
    files, shared and reclaimable), VmHWM its peak since start.
[10] nr1 and nr2, each behind a symmetric NAT (masquerade random: r5 %s, r6 %s),
    cannot hole-punch: nr1's wire status showed nr2 %s via %s. Their
    tunnel runs through the server's UDP relay, which forwards the ciphertext
    between them; measured in the same rounds as [1]. CPU per GB as [4], of
    the server's process (the relay is part of it) and of each daemon.
[11] nt is behind r7 (%s), which drops all UDP but DNS: its daemon reaches
    the relay over TCP, a stream on its HTTPS connection to the server
    (nr1's wire status showed nt %s). nr1 → nt: nr1's half over UDP, nt's
    over TCP; in the same rounds as [10].
[12] The same processes again, 25 s after the stock run of the last round
    ended (the wire runs ended 5 s before it): the wire daemon returns the
    memory a burst left once its next look at the traffic (every 10 s)
    finds the burst over; stock wireguard-go leaves it to the Go runtime.
`, r1WAN, r2WAN, r3WAN, o.secs, o.rounds, res.path.Path, res.path.Endpoint, res.serverBytes, iperfPort, fastPoll, r5WAN, r6WAN, res.relayPath.Path, res.relayPath.Endpoint, r7WAN, res.tcpPath.Path)
}

// writeRows writes the rows as aligned columns.
func writeRows(w io.Writer, rows []row) {
	var wm, wv, wu int
	for _, r := range rows {
		wm, wv, wu = max(wm, len([]rune(r.metric))), max(wv, len(r.value)), max(wu, len(r.unit))
	}
	fmt.Fprintf(w, "%s  %s  %s  %s\n", pad("metric", wm), padLeft("value", wv), pad("unit", wu), "detail")
	for _, r := range rows {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%s  %s  %s  %s", pad(r.metric, wm), padLeft(r.value, wv), pad(r.unit, wu), r.detail), " "))
	}
}

func pad(s string, n int) string     { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
func padLeft(s string, n int) string { return strings.Repeat(" ", max(0, n-len([]rune(s)))) + s }

func gbits(bps float64) string       { return fmt.Sprintf("%.2f", bps/1e9) }
func seconds(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
func millis(d time.Duration) string  { return fmt.Sprintf("%d", d.Milliseconds()) }
func mib(b uint64) string            { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// perRound is the ratio of a to b in each round, when there are several.
func perRound(a, b []transfer) string {
	if len(a) < 2 {
		return ""
	}
	var s []string
	for i := range min(len(a), len(b)) {
		s = append(s, ratio(a[i].bps, b[i].bps))
	}
	return "per round " + strings.Join(s, " ")
}

func list(ds []time.Duration, f func(time.Duration) string) string {
	var s []string
	for _, d := range ds {
		s = append(s, f(d))
	}
	return strings.Join(s, " ")
}

// median is the middle value, or the mean of the two middle ones.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianTransfer is the run of median throughput (the lower middle one of
// an even count).
func medianTransfer(xs []transfer) transfer {
	if len(xs) == 0 {
		return transfer{}
	}
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b transfer) int { return cmp.Compare(a.bps, b.bps) })
	return s[(len(s)-1)/2]
}

// sumTransfers adds up bytes and CPU time of all runs.
func sumTransfers(xs []transfer) transfer {
	var t transfer
	for _, x := range xs {
		t.bytes += x.bytes
		t.cpu += x.cpu
		if t.each == nil {
			t.each = make([]time.Duration, len(x.each))
		}
		for i, c := range x.each {
			t.each[i] += c
		}
	}
	return t
}
