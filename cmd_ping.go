package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"github.com/wire-mesh/wire/node"
)

func pingCommand() *cli.Command {
	return &cli.Command{
		Name:      "ping",
		Usage:     "ping a peer over the tunnel, by name or VPN IP",
		ArgsUsage: "NAME|IP",
		Flags: []cli.Flag{
			nodeStateDirFlag(),
			&cli.IntFlag{Name: "count", Aliases: []string{"c"}, Usage: "echo requests to send", Value: 3},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runPing,
	}
}

func runPing(c *cli.Context) error {
	target, err := oneArg(c, "wire ping")
	if err != nil {
		return err
	}
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	res, err := node.NewClient(dir).Ping(c.Context, node.PingRequest{Target: target, Count: c.Int("count")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, res); err != nil {
			return err
		}
	} else {
		for _, r := range res.Replies {
			fmt.Fprintf(c.App.Writer, "reply from %s (%s) via %s: seq=%d time=%.2f ms\n", shown(res.NodeName), shown(res.VPNIP), res.Path, r.Seq, r.RTTMs)
		}
		fmt.Fprintf(c.App.Writer, "%d sent, %d received\n", res.Sent, res.Received)
	}
	if res.Received == 0 {
		return fmt.Errorf("no reply from %s (%s): path %s", shown(res.NodeName), res.VPNIP, res.Path)
	}
	return nil
}
