//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/lab"
)

// iperfPort is where the iperf3 server listens, and the TCP port the raw
// path's port forward opens.
const iperfPort = 5201

// startIperf runs an iperf3 server in the namespace and waits until it
// listens.
func startIperf(t lab.T, ns *lab.NS) *lab.Proc {
	p := lab.Start(t, ns, "iperf3-server-"+ns.Short, "iperf3", "--server", "--port", strconv.Itoa(iperfPort), "--forceflush")
	if _, err := p.WaitLine("Server listening", 10*time.Second); err != nil {
		t.Fatalf("iperf3 server in %s: %v", ns, err)
	}
	return p
}

// transfer is one iperf3 run, and what the WireGuard processes at both
// ends spent on it.
type transfer struct {
	bps     float64         // the receiver's bits per second
	bytes   uint64          // received
	retrans int             // TCP retransmissions the sender counted
	cpu     time.Duration   // user and system time of the processes given to measure
	each    []time.Duration // of each of them, in the order given
}

// cpuPerGB is the CPU time spent per 10^9 bytes received.
func (x transfer) cpuPerGB() time.Duration { return perGB(x.cpu, x.bytes) }

// cpuPerGBOf is cpuPerGB of the i-th process measured alone.
func (x transfer) cpuPerGBOf(i int) time.Duration {
	if i >= len(x.each) {
		return 0
	}
	return perGB(x.each[i], x.bytes)
}

func perGB(cpu time.Duration, bytes uint64) time.Duration {
	if bytes == 0 {
		return 0
	}
	return time.Duration(float64(cpu) / (float64(bytes) / 1e9))
}

// transferFrom runs an iperf3 client in from to addr for secs seconds (TCP,
// one stream) and reads the CPU time of pids before and after.
func transferFrom(ctx context.Context, from *lab.NS, addr string, secs int, pids ...int) (transfer, error) {
	before, err := cpuTimes(pids...)
	if err != nil {
		return transfer{}, err
	}
	x, err := iperf(ctx, from, addr, secs)
	if err != nil {
		return x, err
	}
	after, err := cpuTimes(pids...)
	if err != nil {
		return x, err
	}
	x.each = make([]time.Duration, len(pids))
	for i := range pids {
		x.each[i] = after[i] - before[i]
		x.cpu += x.each[i]
	}
	return x, nil
}

// iperf runs the client and reads its JSON report.
func iperf(ctx context.Context, from *lab.NS, addr string, secs int) (transfer, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	args := []string{"iperf3", "--client", addr, "--port", strconv.Itoa(iperfPort), "--time", strconv.Itoa(secs),
		"--json", "--connect-timeout", "5000"}
	cmd := lab.Command(ctx, from, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return transfer{}, fmt.Errorf("in %s: iperf3 to %s: %w", from, addr, ctx.Err())
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         uint64  `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(o.String()), &r); err != nil || r.Error != "" || runErr != nil {
		return transfer{}, fmt.Errorf("in %s: %s: %v %s %s %s", from, strings.Join(args, " "), runErr, r.Error, strings.TrimSpace(e.String()), cut(o.String(), 400))
	}
	return transfer{bps: r.End.SumReceived.BitsPerSecond, bytes: r.End.SumReceived.Bytes, retrans: r.End.SumSent.Retransmits}, nil
}

// forward opens a TCP port on the router's WAN address to a LAN host, as
// a home router's port forward does: a DNAT rule, and a forward rule that
// lets the DNATed flows in.
func forward(r *lab.Router, port int, to netip.Addr) error {
	p := strconv.Itoa(port)
	for _, args := range [][]string{
		{"nft", "add", "chain", "ip", "nat", "pre", "{ type nat hook prerouting priority -100; policy accept; }"},
		{"nft", "add", "rule", "ip", "nat", "pre", "iifname", "wan", "tcp", "dport", p, "dnat", "to", to.String()},
		{"nft", "add", "rule", "ip", "filter", "fw", "iifname", "wan", "ip", "daddr", to.String(), "tcp", "dport", p, "ct", "status", "dnat", "accept"},
	} {
		if _, err := lab.Run(r.NS, args...); err != nil {
			return fmt.Errorf("port forward on %s: %w", r, err)
		}
	}
	return nil
}

// cut shortens s to at most n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
