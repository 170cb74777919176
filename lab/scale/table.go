//go:build linux

package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// row is one metric of a table.
type row struct {
	metric, value, unit, detail string
}

// printResult writes the table of one N.
func printResult(w io.Writer, r *result) {
	fmt.Fprintf(w, "\nN = %d simulated nodes, in %d simulator process(es); server %s; simulator %s\n",
		r.n, r.workers, r.serverPinned, r.simPinned)
	var rows []row
	rows = append(rows, enrolRows(r)...)
	rows = append(rows, syncRows("initial sync: all N hold the full map [2]", r.initial)...)
	rows = append(rows, syncRows(fmt.Sprintf("cold start (%s, restart): all N hold it [3]", r.coldSignal), r.cold)...)
	if r.cold.ran {
		rows = append(rows, row{"  server stop, start", seconds(r.coldStop) + ", " + seconds(r.coldStart), "s",
			strings.TrimSuffix("signal → exit, exec → banner (the store loaded); "+errText(r.coldStopErr), "; ")})
	}
	rows = append(rows, steadyRows(r)...)
	rows = append(rows, propagationRows(r)...)
	rows = append(rows, row{"simulator memory, all its processes", mib(r.simMem.RSS) + " / " + mib(r.simMem.HWM), "MiB", "VmRSS / VmHWM at the end"})
	rows = append(rows, logRow(r.serverLog))
	writeRows(w, rows)
	if limit := r.fileLimit - serverFDReserve; r.fileLimit > 0 && r.steady.fds > limit*9/10 {
		fmt.Fprintf(w, "NOTE: the server's open-file limit (%d) caps its connections at %d, and %d nodes held %d:\n"+
			"      connections beyond it are refused, and counted as failed requests.\n", r.fileLimit, limit, r.enrolled, r.steady.fds)
	}
	if len(r.codes) > 0 {
		fmt.Fprintf(w, "HTTP error statuses: %s\n", codeList(r.codes))
	}
	for _, k := range slices.Sorted(maps.Keys(r.samples)) {
		fmt.Fprintf(w, "last %s error: %.200s\n", k, r.samples[k])
	}
	if r.err != nil {
		fmt.Fprintf(w, "STOPPED EARLY: %v\n", r.err)
	}
}

func enrolRows(r *result) []row {
	if r.enrolTook == 0 {
		return []row{{"enrolment", "-", "", "not measured"}}
	}
	rate := float64(r.enrolled) / r.enrolTook.Seconds()
	return []row{
		{"enrolment rate [1]", fmt.Sprintf("%.0f", rate), "nodes/s", fmt.Sprintf("%d of %d enrolled in %s s, %d at a time", r.enrolled, r.n, seconds(r.enrolTook), r.enrolConc)},
		{"  enrolment errors", fmt.Sprint(r.enrolCounts.failed(opEnrol)), "", "failed attempts (a node tries 3 times): " + kinds(r.enrolCounts, opEnrol)},
	}
}

func syncRows(what string, s syncResult) []row {
	if !s.ran {
		return []row{{what, "-", "", "not measured"}}
	}
	took, detail := seconds(s.took), ""
	if !s.complete {
		took = "> " + took
		detail = fmt.Sprintf("NOT ALL: %d of them held it when the benchmark stopped waiting", s.synced)
	}
	if s.half > 0 {
		detail = strings.TrimPrefix(detail+"; ", "; ") + fmt.Sprintf("half of them by %s s, 90%% by %s s", seconds(s.half), seconds(s.p90))
	}
	if o := s.overflows; o != (netstat{}) {
		detail += fmt.Sprintf("; kernel: %d listen overflows, %d SYN retransmits", o.listenOverflows, o.synRetrans)
	}
	return []row{
		{what, took, "s", detail},
		{"  failed requests", fmt.Sprint(s.counts.failed(opPoll, opHeartbeat)), "", "poll " + kinds(s.counts, opPoll) + "; heartbeat " + kinds(s.counts, opHeartbeat)},
		{"  server CPU", seconds(s.serverCPU), "s", fmt.Sprintf("%s%% of a core over the phase's %s s", percent(s.serverCPU, s.wall), seconds(s.wall))},
		{"  simulator CPU", percent(s.simCPU, s.wall), "% of its core", verdict(s.simCPU, s.serverCPU, s.wall)},
		{"  server RSS / peak", mib(s.serverMem.RSS) + " / " + mib(s.serverMem.HWM), "MiB", "VmRSS / VmHWM at the phase's end"},
	}
}

func steadyRows(r *result) []row {
	s := r.steady
	if !s.ran {
		return []row{{"steady state", "-", "", "not measured"}}
	}
	c := s.counts
	return []row{
		{"steady: server CPU [4]", percent(s.serverCPU, s.wall), "% of a core", fmt.Sprintf("over %s s: %d heartbeats, %d long-polls answered", seconds(s.wall), c[opHeartbeat][kindOK], c[opPoll][kindOK])},
		{"steady: server RSS / peak", mib(s.serverMem.RSS) + " / " + mib(s.serverMem.HWM), "MiB", "VmRSS / VmHWM"},
		{"steady: server open files", fmt.Sprint(s.fds), "", fmt.Sprintf("its open-file limit %d, so MaxConns %d; for %d nodes", r.fileLimit, r.fileLimit-serverFDReserve, r.enrolled)},
		{"steady: failed requests", fmt.Sprint(c.failed(opPoll, opHeartbeat)), "", "poll " + kinds(c, opPoll) + "; heartbeat " + kinds(c, opHeartbeat)},
		{"steady: simulator CPU", percent(s.simCPU, s.wall), "% of its core", verdict(s.simCPU, s.serverCPU, s.wall)},
		{"steady: PostgreSQL CPU", percent(s.storeCPU, s.wall), "% of a core", "every process of the cluster; 0 with SQLite"},
	}
}

// propagation is the rounds' figures, all rounds pooled.
type propagation struct {
	p50, p99, max string
	missed        int // deliveries not within propWindow
	deliveries    int // receivers × rounds that ran
	per           []string
	failed        int // rounds whose changing heartbeat failed
}

func propagationOf(r *result) propagation {
	var p propagation
	var all []time.Duration
	for _, rd := range r.rounds {
		if rd.err != "" {
			p.failed++
			p.per = append(p.per, "failed")
			continue
		}
		d := padded(rd.delays, rd.receivers)
		all = append(all, d...)
		p.deliveries += rd.receivers
		p.per = append(p.per, quantile(d, 0.5)+" / "+quantile(d, 0.99))
	}
	slices.Sort(all)
	for _, d := range all {
		if d > propWindow {
			p.missed++
		}
	}
	p.p50, p.p99, p.max = quantile(all, 0.5), quantile(all, 0.99), quantile(all, 1)
	return p
}

func propagationRows(r *result) []row {
	if len(r.rounds) == 0 {
		return []row{{"propagation", "-", "", "not measured"}}
	}
	p := propagationOf(r)
	detail := fmt.Sprintf("%d rounds, p50 / p99 of each: %s", len(r.rounds), strings.Join(p.per, ", "))
	if p.failed > 0 {
		detail += fmt.Sprintf("; in %d the changing heartbeat failed", p.failed)
	}
	return []row{
		{"propagation of one change to all N: p50 [5]", p.p50, "", detail},
		{"  p99", p.p99, "", ""},
		{"  max", p.max, "", ""},
		{"  not delivered within 10 s", fmt.Sprint(p.missed), "", fmt.Sprintf("of %d deliveries (receivers × rounds)", p.deliveries)},
	}
}

// padded is delays with a never for each receiver that did not get it.
func padded(delays []time.Duration, receivers int) []time.Duration {
	d := slices.Clone(delays)
	for len(d) < receivers {
		d = append(d, math.MaxInt64)
	}
	slices.Sort(d)
	return d
}

// quantile is the nearest-rank quantile of sorted ds, "> 10 s" if it is
// a delivery later than the window or none.
func quantile(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "-"
	}
	d := ds[max(int(math.Ceil(q*float64(len(ds))))-1, 0)]
	if d > propWindow {
		return "> 10 s"
	}
	return duration(d)
}

func logRow(s logSummary) row {
	detail := strings.Join(s.top, "; ")
	if s.suppressed > 0 {
		detail = fmt.Sprintf("%d more left out by its rate limit; %s", s.suppressed, detail)
	}
	return row{"server log: warnings / errors", fmt.Sprintf("%d / %d", s.warnings, s.errors), "", detail}
}

// printSummary writes one line per N, in Markdown, for the README.
func printSummary(w io.Writer, e *env, o options, rs []*result) {
	fmt.Fprintf(w, "\nSummary (%s; %s)\n\n", e.host.date.UTC().Format("2006-01-02"), e.host.short())
	fmt.Fprintf(w, "| N | enrolment | initial sync | cold start (%s) | failed requests, cold start | server CPU, steady | server RSS, steady (peak) | propagation p50 / p99 / max | not within 10 s | simulator CPU: steady / cold start |\n", signalName(o))
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintln(w, summaryLine(r))
	}
	fmt.Fprint(w, "\n"+notes(o))
}

func summaryLine(r *result) string {
	enrol := "-"
	if r.enrolTook > 0 {
		enrol = fmt.Sprintf("%.0f nodes/s, %d errors", float64(r.enrolled)/r.enrolTook.Seconds(), r.enrolCounts.failed(opEnrol))
	}
	prop, missed := "-", "-"
	if len(r.rounds) > 0 {
		p := propagationOf(r)
		prop = p.p50 + " / " + p.p99 + " / " + p.max
		missed = fmt.Sprintf("%d of %d", p.missed, p.deliveries)
	}
	cells := []string{
		fmt.Sprint(r.n), enrol, syncCell(r.initial), syncCell(r.cold), fmt.Sprint(r.cold.counts.failed(opPoll, opHeartbeat)),
		percent(r.steady.serverCPU, r.steady.wall) + "%" + storeCell(r),
		mib(r.steady.serverMem.RSS) + " MiB (" + mib(r.steady.serverMem.HWM) + ")",
		prop, missed,
		percent(r.steady.simCPU, r.steady.wall) + "% / " + percent(r.cold.simCPU, r.cold.wall) + "%",
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

func syncCell(s syncResult) string {
	switch {
	case !s.ran:
		return "-"
	case !s.complete:
		return fmt.Sprintf("> %s s (%d held it)", seconds(s.took), s.synced)
	}
	return seconds(s.took) + " s"
}

func signalName(o options) string {
	if o.kill {
		return "SIGKILL"
	}
	return "SIGTERM"
}

// notes say what each figure is.
func notes(o options) string {
	return fmt.Sprintf(`Each N runs against a fresh wire server (built from this tree, CGO_ENABLED=0) on 127.0.0.1,
pinned to one CPU; the simulator's processes are pinned to the other. Every node has its own
ed25519 identity (client certificate), pins the server's key, speaks from its own address
127.1.x.y and uses TLS connections as api.Client does: one for the long-poll
(GET /peers?since=V&wait=%s; after a failure it waits 1, 2, 4, 8, 10, 10 s..., each a random
time in the step's upper half, as node/daemon.go), and one for POST /register (the enrolment,
and a new nat_port in the propagation rounds). Heartbeats come every 3/4 to all of the period
the register answer asks for (heartbeat_every: 120 s; 30 s if it asks nothing), sent between
two polls on the poll's connection while polls are answered, as the daemon does; so a node
holds one connection once its enrolment's has idled out. A request
fails on any error: connect, TLS, timeout (polls 35 s, registrations 10 s), the connection
closed, an HTTP error status, or a malformed answer.
[1] Every node registers with one reusable key (wire server key create --reusable), %d at a time
    in all; nodes do not poll until all have enrolled. Rate = enrolled / time to the last.
[2] From the moment all nodes start polling since=0 at once, until the last of them holds the
    whole map (its map lists every enrolled node).
[3] Nodes are held; the server gets the signal and is started again on the same port and state;
    then every node reconnects at once (resuming its TLS session) and polls since its version
    from the old run. Until the last node has had an answer from the new server: only what
    changed, if the new server held the node's map (see server/digest.go), else the whole map.
    Failed requests: after the restart.
[4] %v of heartbeats and idle long-polls, from 40 s after the enrolment on. CPU: utime+stime from
    /proc/PID/stat over the interval; RSS: VmRSS and VmHWM from /proc/PID/status.
[5] One node sends a heartbeat with a new nat_port (%d rounds, a different node each);
    per other node, the time from sending it until that node's long-poll answer carrying it
    was read. Percentiles over every receiver: one that had not got it counts as never
    ("> 10 s").
`, pollWait, o.enrolConc, o.duration, o.rounds)
}

// writeRows writes rows as aligned columns.
func writeRows(w io.Writer, rows []row) {
	var wm, wv, wu int
	for _, r := range rows {
		wm, wv, wu = max(wm, len([]rune(r.metric))), max(wv, len([]rune(r.value))), max(wu, len(r.unit))
	}
	fmt.Fprintf(w, "%s  %s  %s  %s\n", pad("metric", wm), padLeft("value", wv), pad("unit", wu), "detail")
	for _, r := range rows {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%s  %s  %s  %s", pad(r.metric, wm), padLeft(r.value, wv), pad(r.unit, wu), r.detail), " "))
	}
}

func pad(s string, n int) string     { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
func padLeft(s string, n int) string { return strings.Repeat(" ", max(0, n-len([]rune(s)))) + s }

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
func mib(b uint64) string            { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

// verdict says whether the simulator may have bounded a phase.
func verdict(sim, server, wall time.Duration) string {
	s := fmt.Sprintf("the server's core %s%% meanwhile", percent(server, wall))
	if wall > 0 && sim.Seconds()/wall.Seconds() >= 0.95 {
		s += "; THE SIMULATOR WAS SATURATED: this phase's figures may be its limit, not the server's"
	}
	return s
}

func percent(part, whole time.Duration) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*part.Seconds()/whole.Seconds())
}

// duration is d in ms below 10 s, else in s.
func duration(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// kinds lists the failures of op by kind: "12 (timeout 10, closed 2)".
func kinds(c counts, o op) string {
	var parts []string
	for k := kindOK + 1; k < kindShed; k++ {
		if c[o][k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, c[o][k]))
		}
	}
	s := fmt.Sprint(c.failed(o))
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	s += fmt.Sprintf(" of %d", c.failed(o)+c[o][kindOK]+c[o][kindShed])
	if shed := c[o][kindShed]; shed > 0 {
		s += fmt.Sprintf(", %d shed politely (503, Retry-After)", shed)
	}
	return s
}

func codeList(codes map[int]uint64) string {
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(codes)) {
		parts = append(parts, fmt.Sprintf("%d ×%d", c, codes[c]))
	}
	return strings.Join(parts, ", ")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "exit: " + err.Error()
}

// topCounts are the n commonest keys, "key ×count", commonest first.
func topCounts(m map[string]int, n int) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%q ×%d", k, m[k]))
	}
	return out
}

// storeCell is PostgreSQL's steady CPU, beside the server's, when it runs.
func storeCell(r *result) string {
	if r.steady.storeCPU == 0 {
		return ""
	}
	return " (+ " + percent(r.steady.storeCPU, r.steady.wall) + "% PostgreSQL)"
}
