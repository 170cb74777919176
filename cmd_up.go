package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/service"
	"github.com/wire-mesh/wire/wg"
)

func nodeStateDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "state-dir",
		Usage:   "the node's config, keys and control socket (default: /etc/wire as root, ~/.wire otherwise)",
		EnvVars: []string{"WIRE_STATE_DIR"},
	}
}

// nodeStateDir is --state-dir, or the default. Commands that only talk to
// a running daemon (status, peers, ping) fall back from ~/.wire to
// /etc/wire, so a user reaches the system daemon without sudo.
func nodeStateDir(c *cli.Context, reading bool) (string, error) {
	if d := c.String("state-dir"); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return node.RootDir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory (%v): pass --state-dir", err)
	}
	dir := filepath.Join(home, ".wire")
	if _, err := os.Stat(filepath.Join(dir, node.SocketFile)); reading && err != nil {
		return node.RootDir, nil
	}
	return dir, nil
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "join the mesh (first time: --server and --join) and bring the tunnel up",
		Description: "The first time: sudo wire up --server https://SERVER:8787 --join KEY\n" +
			"Afterwards the saved config is enough: sudo wire up\n" +
			"The daemon keeps running as a system service (systemd's wire.service, or\n" +
			"launchd's com.wire-mesh.wire on macOS), otherwise in the background;\n" +
			"--foreground runs it in this process.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, Usage: "coordination server URL (saved)"},
			&cli.StringFlag{Name: "join", Aliases: []string{"j"}, Usage: "join key from `wire server key create` (first time only)", EnvVars: []string{"WIRE_JOIN_KEY"}},
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "this node's name (default: the hostname)"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "WireGuard listen port", Value: node.DefaultPort},
			&cli.StringFlag{Name: "interface", Usage: "interface name (one per node on a host)", Value: defaultInterface},
			&cli.StringFlag{Name: "node-id", Usage: "this node's id at the server, when joining (default: a hash of the host and the state dir; the seed's sha256(hostname + MAC) in the default state dir)"},
			&cli.StringFlag{Name: "engine", Usage: "WireGuard engine: auto, kernel or userspace", Value: "auto"},
			nodeStateDirFlag(),
			&cli.BoolFlag{Name: "foreground", Usage: "run the daemon in this process (for service managers and tests)"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
		},
		Action: runUp,
	}
}

func runUp(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("up: unexpected argument %q (see wire up --help)", c.Args().First())
	}
	dir, err := nodeStateDir(c, false)
	if err != nil {
		return err
	}
	if st, err := node.NewClient(dir).Status(c.Context); err == nil {
		fmt.Fprintf(c.App.Writer, "wire is already up: %s %s on %s\n", st.NodeName, st.VPNIP, st.Interface)
		return nil
	}
	cfg, err := upConfig(c, dir)
	if err != nil {
		return err
	}
	if c.Bool("foreground") {
		return runDaemon(c, dir)
	}
	return startDaemon(c, dir, cfg)
}

// upConfig joins (with --server) or loads the saved config, applying the
// flags the user set.
func upConfig(c *cli.Context, dir string) (node.Config, error) {
	if c.IsSet("server") || c.IsSet("join") {
		if !c.IsSet("server") {
			return node.Config{}, errors.New("--join needs --server URL too")
		}
		ctx, cancel := context.WithTimeout(c.Context, 15*time.Second)
		defer cancel()
		return node.Join(ctx, node.JoinOptions{
			Dir: dir, ServerURL: c.String("server"), JoinKey: c.String("join"), Name: c.String("name"),
			Port: c.Int("port"), Interface: c.String("interface"), NodeID: c.String("node-id"),
		})
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		return cfg, err
	}
	changed := false
	for flag, set := range map[string]func(){
		"port":      func() { cfg.ListenPort = c.Int("port") },
		"interface": func() { cfg.Interface = c.String("interface") },
		"name":      func() { cfg.NodeName = c.String("name") },
	} {
		if c.IsSet(flag) {
			set()
			changed = true
		}
	}
	if cfg.Interface == "" {
		cfg.Interface = defaultInterface
	}
	if changed {
		return cfg, cfg.Save(dir)
	}
	return cfg, nil
}

func runDaemon(c *cli.Context, dir string) error {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	kind := c.String("engine")
	d, err := node.New(node.Options{Dir: dir, Logger: log, NewEngine: func(name string, l *slog.Logger) (wg.Engine, error) {
		return wg.New(wg.Options{Name: name, Kind: kind, Logger: l})
	}})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := d.Start(ctx); err != nil {
		return err
	}
	cfg := d.Config()
	fmt.Fprintf(c.App.Writer, "wire up: %s %s on %s\n", cfg.NodeName, cfg.VPNIP, cfg.Interface)
	return d.Run(ctx)
}

// startDaemon hands the daemon to the service manager (systemd, launchd),
// or detaches it where there is none, and waits until it is up.
func startDaemon(c *cli.Context, dir string, cfg node.Config) error {
	bin, err := serviceExecutable()
	if err != nil {
		return err
	}
	exited := make(chan error, 1)
	if service.Available() {
		if err := node.InstallService(c.Context, bin, dir); err != nil {
			return err
		}
	} else {
		args := []string{"up", "--foreground", "--state-dir", dir, "--engine", c.String("engine")}
		if c.Bool("debug") {
			args = append(args, "--debug")
		}
		p, err := node.Detach(bin, args, dir)
		if err != nil {
			return err
		}
		go func() { _, err := p.Wait(); exited <- err }()
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	st, err := node.WaitUp(ctx, dir, exited)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wire is up: %s %s on %s (%s)\n", st.NodeName, st.VPNIP, st.Interface, st.Engine)
	return nil
}
