package main

import (
	"fmt"
	"runtime"

	"github.com/wire-mesh/wire/internal/cli"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print wire's version",
		Action: noArgs(func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "wire %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		}),
	}
}
