package main

import (
	"fmt"
	"os"

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
	if os.Geteuid() == 0 && node.StopService(c.Context) {
		fmt.Fprintln(c.App.Writer, "wire is down (service stopped)")
		return nil
	}
	if err := node.NewClient(dir).Down(c.Context); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "wire is down")
	return nil
}
