package main

import (
	"fmt"
	"io"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:   "install",
		Usage:  "check the platform (WireGuard, TUN, privileges, server, service) and say what is missing",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(runInstall),
	}
}

func runInstall(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	checks := node.Checks(c.Context, dir)
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"checks": checks})
	}
	printChecks(c.App.Writer, checks)
	return nil
}

// printChecks prints checks a line each, with the fix of each that failed.
func printChecks(w io.Writer, checks []node.Check) {
	for _, ch := range checks {
		mark := "✓"
		if !ch.OK {
			mark = "✗"
		}
		fmt.Fprintf(w, "%s %-17s %s\n", mark, ch.Name, ch.Finding)
		if ch.Fix != "" {
			fmt.Fprintf(w, "  %-17s → %s\n", "", ch.Fix)
		}
	}
}
