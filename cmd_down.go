package main

import (
	"fmt"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:   "down",
		Usage:  "remove the interface and stop the daemon",
		Flags:  []cli.Flag{nodeStateDirFlag()},
		Action: noArgs(runDown),
	}
}

func runDown(c *cli.Context) error {
	dir, err := nodeStateDir(c, true) // a user's wire down finds root's daemon, which says it needs root
	if err != nil {
		return err
	}
	msg, err := node.Down(c.Context, node.NewClient(dir))
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, msg)
	return nil
}
