package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"github.com/wire-mesh/wire/node"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:   "down",
		Usage:  "remove the interface and stop the daemon",
		Flags:  []cli.Flag{nodeStateDirFlag()},
		Action: runDown,
	}
}

func runDown(c *cli.Context) error {
	dir, err := nodeStateDir(c, false)
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
