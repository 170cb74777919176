package main

import (
	"fmt"

	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func diagnoseCommand() *cli.Command {
	return &cli.Command{
		Name:   "diagnose",
		Usage:  "check the platform, the config and the running node (engine, server, interface, enrolment, STUN), each with a fix",
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: noArgs(runDiagnose),
	}
}

// runDiagnose prints the diagnosis, and fails if a check did.
func runDiagnose(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	d := diag.Diagnose(c.Context, dir, node.NewClient(dir), nil)
	if c.Bool("json") {
		err = printJSON(c.App.Writer, d)
	} else {
		printChecks(c.App.Writer, d.Checks)
	}
	if err == nil && !d.OK {
		failed := 0
		for _, ch := range d.Checks {
			if !ch.OK {
				failed++
			}
		}
		err = fmt.Errorf("%d of %d checks failed", failed, len(d.Checks))
	}
	return err
}
