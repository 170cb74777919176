package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func watchdogCommand() *cli.Command {
	return &cli.Command{
		Name:   "watchdog",
		Usage:  "check every peer's handshake (stale: none for over 3 minutes) and the daemon's service; fails if one is stale",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(runWatchdog),
	}
}

func runWatchdog(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	w, werr := diag.Watch(c.Context, node.NewClient(dir))
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, w); err != nil {
			return err
		}
	} else {
		printWatchdog(c, w)
	}
	switch {
	case werr != nil:
		return werr
	case w.Stale > 0:
		return fmt.Errorf("%d of %d peers stale", w.Stale, len(w.Peers))
	}
	return nil
}

func printWatchdog(c *cli.Context, w diag.Watchdog) {
	out := c.App.Writer
	unit := w.Service.State
	if w.Service.Systemd {
		unit = w.Service.Unit + " " + w.Service.State
	}
	fmt.Fprintf(out, "daemon %s; service: %s\n", w.Service.Daemon, unit)
	if len(w.Peers) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tVPN IP\tPATH\tHANDSHAKE\t")
	for _, p := range w.Peers {
		hs, mark := "never", ""
		if p.HandshakeAgoS >= 0 {
			hs = ago(p.HandshakeAgoS)
		}
		if p.Stale {
			mark = "stale"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shown(p.NodeName), p.VPNIP, p.Path, hs, mark)
	}
	tw.Flush()
}
