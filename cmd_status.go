package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:   "status",
		Usage:  "show the whole network: every node, online or offline, and the path to each",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(showStatus),
	}
}

func showStatus(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	st, err := node.NewClient(dir).Status(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, st)
	}
	w := c.App.Writer
	reach := ""
	if !st.ServerReachable {
		reach = "  (server unreachable: cached peers, online as their tunnels say)"
	}
	fmt.Fprintf(w, "wire status  %s%s\n", shown(st.ServerURL), reach)
	if len(st.OtherServers) > 0 {
		fmt.Fprintf(w, "  failover: %s\n", strings.Join(st.OtherServers, ", "))
	}
	if st.Advice != "" { // removed, or expired
		fmt.Fprintf(w, "  %s\n", st.Advice)
	}
	fmt.Fprintf(w, "  %d online / %d offline / %d total\n\n", st.Online, st.Offline, st.Total)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ●\t%s\t%s\t%s\tthis node\t%s\t\n", st.NodeName, st.VPNIP, endpoint(st.PublicIP, st.NATPort), st.Engine)
	for _, p := range st.Peers {
		// Without the server, a peer's tunnel is what tells: a fresh
		// handshake (a path other than none) is as good as online.
		dot := "●"
		if p.Status != "online" && (p.Status != "unknown" || !node.Tunnelled(p.Path)) {
			dot = "○"
		}
		seen := "cached"
		if p.LastSeenAgo >= 0 {
			seen = ago(p.LastSeenAgo)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", dot, shown(dnsOr(p)), shown(p.VPNIP), dash(p.PublicIP), seen, p.Path, handshake(p.LatestHandshake))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	relayed := false
	for _, p := range st.Peers {
		if p.Why != "" {
			if !relayed {
				fmt.Fprintln(w)
			}
			relayed = true
			fmt.Fprintf(w, "  %s is on the relay: %s\n", shown(p.NodeName), p.Why)
		}
	}
	for _, p := range st.Peers {
		if p.KeyAlert != "" {
			fmt.Fprintf(w, "\nWARNING: %s\n", shown(p.KeyAlert))
		}
	}
	return nil
}

// dnsOr is the peer's DNS name (b.wire), or its name from a daemon that
// does not say one.
func dnsOr(p node.PeerStatus) string {
	if p.DNSName != "" {
		return p.DNSName
	}
	return p.NodeName
}

func handshake(t *time.Time) string {
	if t == nil {
		return "no handshake"
	}
	return "handshake " + ago(int64(time.Since(*t)/time.Second))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return shown(s)
}

// shown makes a string that came from elsewhere (a peer, through the
// server) safe to print to a terminal: control characters and invalid
// UTF-8 are escaped as Go would quote them, so that no escape sequence
// reaches the terminal; anything printable is left as it is.
func shown(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsGraphic(r) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:   "peers",
		Usage:  "list the peers this node's WireGuard is configured with",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(showPeers),
	}
}

func showPeers(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	peers, err := node.NewClient(dir).Peers(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"peers": peers})
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVPN IP\tENDPOINT\tPATH\tHANDSHAKE\tRX\tTX\tTIER")
	var alerts []string
	for _, p := range peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", shown(p.NodeName), shown(p.VPNIP), dash(p.Endpoint), p.Path, handshake(p.LatestHandshake), p.RxBytes, p.TxBytes, dash(p.Tier))
		if p.KeyAlert != "" {
			alerts = append(alerts, "WARNING: "+shown(p.KeyAlert))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range alerts {
		fmt.Fprintln(c.App.Writer, a)
	}
	return nil
}
