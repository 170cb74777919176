package main

import (
	"fmt"

	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func netcheckCommand() *cli.Command {
	return &cli.Command{
		Name:   "netcheck",
		Usage:  "how this node's network looks from its server: public address, the kind of NAT, UDP, the relay, and what it means for direct connections",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(runNetcheck),
	}
}

// runNetcheck prints the check, and fails if UDP to the server does not
// work (the node then has no path to peers behind NATs).
func runNetcheck(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		return err
	}
	nc := diag.CheckNetwork(c.Context, cfg)
	if c.Bool("json") {
		err = printJSON(c.App.Writer, nc)
	} else {
		w := c.App.Writer
		fmt.Fprintf(w, "wire netcheck  %s\n", shown(nc.Server))
		fmt.Fprintf(w, "  https  %s\n", nc.HTTPS.Where())
		fmt.Fprintf(w, "  stun   %s\n", nc.STUN.Where())
		fmt.Fprintf(w, "  relay  %s\n", nc.Relay.Where())
		fmt.Fprintf(w, "  nat    %s\n", nc.NAT)
		fmt.Fprintf(w, "  → %s\n", nc.Verdict)
	}
	if err == nil && !nc.UDP {
		err = fmt.Errorf("no UDP answer from %s", nc.Server)
	}
	return err
}
