// Command wire is a self-hosted WireGuard mesh VPN in one binary: the
// coordination server (wire server), the node daemon (wire up) and an MCP
// server (wire mcp). Invoked through a symlink named wire-server or
// wire-mcp, it runs that subcommand.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version string

func main() {
	app := newApp(os.Stdout, os.Stderr)
	if err := app.Run(splitShortValues(dispatch(app, os.Args))); err != nil {
		fmt.Fprintf(os.Stderr, "wire: %v\n", err)
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
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          false,
		EnableBashCompletion: false,
		// Errors are printed once, by main, as "wire: ...".
		ExitErrHandler: func(*cli.Context, error) {},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "wire: %s: no such command (see %s --help)\n", name, strings.TrimSpace("wire "+commandPath(c)))
			os.Exit(2)
		},
	}
}

// noArgs wraps the action of a command that takes no arguments: any it
// is given are refused, not ignored. urfave/cli stops reading options at
// the first argument, so in "wire status extra --json" both are
// arguments, and the user would otherwise get a silent surprise.
func noArgs(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			name := commandPath(c)
			return fmt.Errorf("%s: unexpected argument %q: it takes none, and options go before arguments (see wire %s --help)", name, c.Args().First(), name)
		}
		return action(c)
	}
}

// commandPath is the command c runs, as typed after wire: "server key
// create".
func commandPath(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			names = append([]string{l.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// dispatch maps a busybox-style invocation (wire-server ARGS) to the
// subcommand (wire server ARGS), using the app's own command list.
func dispatch(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	name := strings.TrimSuffix(filepath.Base(args[0]), ".exe")
	sub, ok := strings.CutPrefix(name, "wire-")
	if !ok {
		return args
	}
	for _, c := range app.Commands {
		if c.Name == sub {
			return append([]string{args[0], sub}, args[1:]...)
		}
	}
	return args
}

// splitShortValues writes the numeric short options that ping and the
// like accept stuck together (-c1, -p51821) as urfave/cli reads them (-c
// 1). Only the short options wire has that take numbers are split.
func splitShortValues(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if len(a) > 2 && a[0] == '-' && strings.ContainsRune("cp", rune(a[1])) && strings.Trim(a[2:], "0123456789") == "" {
			out = append(out, a[:2], a[2:])
			continue
		}
		out = append(out, a)
	}
	return out
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
