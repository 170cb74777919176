package main

import (
	"fmt"

	"github.com/wire-mesh/wire/internal/cli"
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
	req := node.PingRequest{Target: target, Count: c.Int("count")}
	var res node.PingResult
	if c.Bool("json") {
		if res, err = node.NewClient(dir).Ping(c.Context, req); err != nil {
			return err
		}
		if err := printJSON(c.App.Writer, res); err != nil {
			return err
		}
	} else {
		// As ping does: each reply as it comes, and where it came from.
		printed := 0
		each := func(r node.PingReply) {
			printed++
			if r.Lost {
				fmt.Fprintf(c.App.Writer, "no reply from %s: seq=%d\n", shown(target), r.Seq)
				return
			}
			fmt.Fprintf(c.App.Writer, "reply from %s: seq=%d time=%.2f ms%s\n", shown(target), r.Seq, r.RTTMs, via(r.Endpoint))
		}
		if res, err = node.NewClient(dir).PingStream(c.Context, req, each); err != nil {
			return err
		}
		if printed == 0 { // a daemon that does not stream
			for _, r := range res.Replies {
				each(r)
			}
		}
		fmt.Fprintf(c.App.Writer, "%s (%s), path %s: %d sent, %d received\n", shown(res.NodeName), shown(res.VPNIP), res.Path, res.Sent, res.Received)
	}
	if res.Received == 0 {
		return fmt.Errorf("no reply from %s (%s): path %s", shown(res.NodeName), shown(res.VPNIP), res.Path)
	}
	return nil
}

func via(endpoint string) string {
	if endpoint == "" {
		return ""
	}
	return " via " + shown(endpoint)
}
