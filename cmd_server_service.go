package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/service"
)

func installServiceCommand() *cli.Command {
	return &cli.Command{
		Name:  "install-service",
		Usage: "run the server as a system service (systemd's wire-server, launchd's com.wire-mesh.wire-server)",
		Description: "Takes wire server's flags: those you set go into the service's command line, with\n" +
			"--state-dir always (default: /var/lib/wire). It writes the unit (or the plist on macOS),\n" +
			"enables it and starts it; the service restarts the server whenever it stops, and starts\n" +
			"it at boot. If the server does not start, the unit it replaced is put back (systemd).\n" +
			"With --print it only prints the unit or plist.",
		Flags: append(serverFlags(),
			&cli.BoolFlag{Name: "print", Usage: "print the unit (or plist) to stdout and change nothing"},
			&cli.StringFlag{Name: "format", Usage: "with --print: systemd or launchd (default: this system's)"},
		),
		Action: noArgs(installService),
	}
}

func installService(c *cli.Context) error {
	if c.IsSet("format") && !c.Bool("print") {
		return errors.New("--format goes with --print: installing uses this system's service manager")
	}
	spec, cfg, err := serverService(c)
	if err != nil {
		return err
	}
	if c.Bool("print") {
		return printService(c.App.Writer, spec, c.String("format"))
	}
	if !service.Available() {
		return errors.New("no service manager to install into here (wire uses systemd on Linux, launchd on macOS): --print shows the unit, to install by hand or adapt")
	}
	if os.Geteuid() != 0 {
		return errors.New("installing a system service needs root: run it with sudo (--print shows the unit and changes nothing)")
	}
	if err := makeStateDir(cfg.StateDir); err != nil {
		return err
	}
	if err := service.Install(c.Context, spec); err != nil {
		return fmt.Errorf("%w\n  the server's log: %s", err, service.Logs(spec))
	}
	printInstalled(c.App.Writer, c.App.ErrWriter, spec, cfg)
	return nil
}

// makeStateDir creates dir, 0700, with any missing parents 0755 as usual.
func makeStateDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// serverService is `wire server`, with the flags of c, as a service. The
// service runs as root: its state dir defaults to root's.
func serverService(c *cli.Context) (service.Spec, server.Config, error) {
	dir := c.String("state-dir")
	if dir == "" {
		dir = rootStateDir
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return service.Spec{}, server.Config{}, err
	}
	cfg, err := serverConfig(c, dir)
	if err != nil {
		return service.Spec{}, cfg, err
	}
	if err := checkFlags(cfg); err != nil {
		return service.Spec{}, cfg, err
	}
	bin, err := serviceExecutable()
	if err != nil {
		return service.Spec{}, cfg, err
	}
	args, err := serverArgs(c, cfg)
	if err != nil {
		return service.Spec{}, cfg, err
	}
	return service.Spec{
		Name:         "wire-server",
		Description:  "wire coordination server",
		Args:         append([]string{bin}, args...),
		StateDir:     dir,
		Restart:      service.Always,
		RestartDelay: 5 * time.Second,
		Notify:       true, // runServer says READY=1
		Sandbox:      true,
		MaxFiles:     65536, // a long-poll per node
		LogPath:      "/var/log/wire-server.log",
	}, cfg, nil
}

// serverArgs are the arguments of `wire server` in the service: the flags
// the user set, on the command line or through environment variables that
// the service will not have, with the state dir always; paths are made
// absolute, as the service manager runs the server from /.
func serverArgs(c *cli.Context, cfg server.Config) ([]string, error) {
	args := []string{"server", "--state-dir", cfg.StateDir}
	for _, f := range serverFlags() {
		name := f.Names()[0]
		if name == "state-dir" || !c.IsSet(name) {
			continue
		}
		switch f.(type) {
		case *cli.BoolFlag:
			if c.Bool(name) {
				args = append(args, "--"+name)
			}
		case *cli.StringSliceFlag:
			for _, v := range c.StringSlice(name) {
				args = append(args, "--"+name, v)
			}
		default:
			v := c.String(name)
			if name == "store" && storeHasPassword(v) {
				return nil, errors.New("--store: the URL holds a password, which the service's unit would show every user of this machine; " +
					"leave it out and give it to PostgreSQL's client in the service user's ~/.pgpass (or connect over a unix socket with peer authentication)")
			}
			if name == "import" && v != "" {
				var err error
				if v, err = filepath.Abs(v); err != nil {
					return nil, err
				}
			}
			args = append(args, "--"+name, v)
		}
	}
	if !c.IsSet("listen") && cfg.Listen != defaultListen {
		args = append(args, "--listen", cfg.Listen) // from $WIRE_PORT
	}
	return args, nil
}

// storeHasPassword says whether a --store URL carries a password.
func storeHasPassword(store string) bool {
	u, err := url.Parse(store)
	if err != nil {
		return strings.Contains(store, "password")
	}
	_, set := u.User.Password()
	return set || u.Query().Has("password")
}

// checkFlags rejects what `wire server` would fail on when it starts
// (listen addresses it cannot bind, a seed file it cannot read) before it
// goes into a service that would fail at every restart.
func checkFlags(cfg server.Config) error {
	for _, a := range [][2]string{{"--listen", cfg.Listen}, {"--stun-listen", cfg.STUNListen}, {"--relay-listen", cfg.RelayListen}} {
		if _, _, err := net.SplitHostPort(a[1]); a[1] != "" && err != nil {
			return fmt.Errorf("%s %q: want HOST:PORT or :PORT (%v)", a[0], a[1], err)
		}
	}
	if cfg.SeedStateFile != "" {
		if _, err := os.Stat(cfg.SeedStateFile); err != nil {
			return fmt.Errorf("--import: %w", err)
		}
	}
	return nil
}

// printService prints the unit or plist, in format or this system's.
func printService(w io.Writer, spec service.Spec, format string) error {
	if format == "" {
		format = service.Manager
	}
	switch format {
	case "systemd":
		fmt.Fprint(w, service.Systemd(spec))
	case "launchd":
		fmt.Fprint(w, service.Launchd(spec))
	case "":
		return errors.New("wire knows no service manager here: pass --format systemd or --format launchd")
	default:
		return fmt.Errorf("--format %q: want systemd or launchd", format)
	}
	return nil
}

func printInstalled(w, ew io.Writer, spec service.Spec, cfg server.Config) {
	fmt.Fprintf(w, "installed %s and started it:\n  %s\n", spec.Path(), strings.Join(spec.Args, " "))
	fmt.Fprintln(w, "It restarts whenever it stops, and starts at boot.")
	fmt.Fprintf(w, "Its log:            %s\n", service.Logs(spec))
	if cfg.Open {
		fmt.Fprint(ew, openWarning)
		return
	}
	_, port, _ := net.SplitHostPort(cfg.Listen)
	fmt.Fprintf(w, "Create a join key:  sudo wire server key create --state-dir %s\n", cfg.StateDir)
	fmt.Fprintf(w, "Then on each node:  sudo wire up --server https://THIS_HOST:%s --join KEY\n", port)
}
