package main

import (
	"log/slog"
	"os"

	"github.com/wire-mesh/wire/internal/cli"
	wiremcp "github.com/wire-mesh/wire/mcp"
)

func mcpCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcp",
		Usage: "serve the mesh to an AI assistant over the Model Context Protocol (stdio)",
		Description: "Speaks MCP (JSON-RPC, one message a line) on stdin and stdout; logs go to stderr.\n" +
			`Claude Desktop: {"command": "wire", "args": ["mcp"]}, or the wire-mcp symlink.`,
		Flags:  []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "debug", Usage: "log debug messages"}},
		Action: noArgs(runMCP),
	}
}

func runMCP(c *cli.Context) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	// stdout carries the protocol alone: anything else that prints to
	// os.Stdout lands on stderr instead.
	out := os.Stdout
	os.Stdout = os.Stderr
	defer func() { os.Stdout = out }()
	s := wiremcp.New(wiremcp.Options{Dir: dir, Version: buildVersion(), Logger: log})
	return s.Serve(c.Context, os.Stdin, out)
}
