package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:   "whoami",
		Usage:  "this node: name, VPN IP, WireGuard key and fingerprint, server, identity key, and whether it is enrolled",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(runWhoami),
	}
}

func runWhoami(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	id, err := diag.Whoami(c.Context, node.NewClient(dir))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, id)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	enrolled := "yes"
	if !id.Enrolled {
		enrolled = "no: " + id.Advice
	}
	for _, row := range [][2]string{
		{"name", shown(id.NodeName)}, {"vpn ip", id.VPNIP}, {"server", shown(id.ServerURL)},
		{"wireguard key", id.WGPublicKey + " (" + id.Fingerprint + ")"},
		{"identity key", id.IdentityKey + " (" + id.IdentityFingerprint + ")"},
		{"messaging", id.Messaging}, {"enrolled", enrolled},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}
