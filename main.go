// Command wire is a self-hosted WireGuard mesh VPN in one binary: the
// coordination server (wire server), the node daemon (wire up) and an MCP
// server (wire mcp). Invoked through a symlink named wire-server or
// wire-mcp, it runs that subcommand.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/wire-mesh/wire/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version string

func main() {
	app := newApp(os.Stdout, os.Stderr)
	// Errors are printed once, here, as "wire: ...".
	if err := app.Run(context.Background(), dispatch(app.Commands, os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "wire: %v\n", err)
		if errors.Is(err, cli.ErrNoCommand) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "wire",
		Usage:   "a self-hosted WireGuard mesh VPN",
		Version: buildVersion(),
		Description: "One always-on host runs `wire server`, the coordination server. Every machine\n" +
			"runs `wire up`, which builds direct WireGuard tunnels to its peers.",
		Commands: []*cli.Command{
			upCommand(), statusCommand(), peersCommand(), pingCommand(), downCommand(), installCommand(),
			diagnoseCommand(), watchdogCommand(), whoamiCommand(), netcheckCommand(),
			sendCommand(), tailCommand(), verifyCommand(), pairCommand(), blockCommand(),
			serverCommand(), mcpCommand(), versionCommand(),
		},
		Reader:    os.Stdin,
		Writer:    stdout,
		ErrWriter: stderr,
	}
}

// noArgs wraps the action of a command that takes no arguments: any it
// is given are refused, not ignored. Options are read only up to the
// first argument, so in "wire status extra --json" both are arguments,
// and the user would otherwise get a silent surprise.
func noArgs(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("%s: unexpected argument %q: it takes none, and options go before arguments (see wire %s --help)", c.Path(), c.Arg(0), c.Path())
		}
		return action(c)
	}
}

// dispatch maps a busybox-style invocation (wire-server ARGS) to the
// subcommand (wire server ARGS), using the app's own command list. It
// returns the arguments after the program's name.
func dispatch(commands []*cli.Command, argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	name := strings.TrimSuffix(filepath.Base(argv[0]), ".exe")
	sub, ok := strings.CutPrefix(name, "wire-")
	if !ok {
		return argv[1:]
	}
	for _, c := range commands {
		if c.Name == sub {
			return append([]string{sub}, argv[1:]...)
		}
	}
	return argv[1:]
}

// buildVersion is the -ldflags version, else what the Go toolchain
// recorded: the module version, or the VCS revision.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
