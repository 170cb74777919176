package main

import (
	"fmt"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func blockCommand() *cli.Command {
	return &cli.Command{
		Name:      "block",
		Usage:     "refuse a peer's messages (the tunnel stays: this is about messages only)",
		ArgsUsage: "PEER",
		Flags:     []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "undo", Usage: "take its messages again"}},
		Action: func(c *cli.Context) error {
			peer, err := oneArg(c, "wire block")
			if err != nil {
				return err
			}
			dir, err := nodeStateDir(c, true)
			if err != nil {
				return err
			}
			name, err := node.NewClient(dir).Block(c.Context, peer, !c.Bool("undo"))
			if err != nil {
				return err
			}
			if c.Bool("undo") {
				fmt.Fprintf(c.App.Writer, "%s is no longer blocked\n", shown(name))
			} else {
				fmt.Fprintf(c.App.Writer, "blocked %s: its messages are refused, and yours to it are not sent\n", shown(name))
			}
			return nil
		},
	}
}
