package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/dashboard"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/service"
	"golang.org/x/time/rate"
)

func stateDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "state-dir",
		Usage:   "where the server keeps its store, TLS key and admin token (default: /var/lib/wire as root, ~/.wire otherwise)",
		EnvVars: []string{"WIRE_STATE_DIR"},
	}
}

func storeFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "store",
		Usage:   "where the mesh is kept: a postgres:// URL that several servers share (default: SQLite in the state dir)",
		EnvVars: []string{"WIRE_STORE"},
	}
}

// withState is an admin command's flags: the state dir and store, then more.
func withState(more ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{stateDirFlag(), storeFlag()}, more...)
}

// rootStateDir is where the server keeps its state when it runs as root.
const rootStateDir = "/var/lib/wire"

// serverStateDir is --state-dir, or the default for this user.
func serverStateDir(c *cli.Context) (string, error) {
	if d := c.String("state-dir"); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return rootStateDir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the state dir (%v): pass --state-dir", err)
	}
	return filepath.Join(home, ".wire"), nil
}

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "run the coordination server (HTTP API, STUN, relay) on an always-on host",
		Description: "Serves the HTTP API on TCP 8787 (TLS; nodes pin its key through their join key),\n" +
			"STUN on UDP 8788 and the relay on UDP 8789. Create join keys with `wire server key create`.",
		Flags:  serverFlags(),
		Action: noArgs(runServer),
		Subcommands: []*cli.Command{
			keyCommand(),
			nodesCommand(),
			nodeCommand(),
			policyCommand(),
			migrateCommand(),
			installServiceCommand(),
		},
	}
}

// serverFlags configure `wire server`, and the service that
// `wire server install-service` installs.
func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Usage: "HTTP API address; STUN uses the next port on UDP", Value: defaultListen, DefaultText: ":8787, or :$WIRE_PORT"},
		&cli.StringFlag{Name: "stun-listen", Usage: "STUN's UDP address (default: the HTTP port + 1)"},
		&cli.StringFlag{Name: "relay-listen", Usage: "the relay's UDP address (default: the HTTP port + 2)"},
		&cli.StringFlag{Name: "relay-rate", Usage: "what each node may send through the relay, in bits per second (500M, 2G, 10G) or unlimited", Value: "2G"},
		&cli.StringSliceFlag{Name: "relay-peer", Usage: "the relay (HOST:PORT) of another server of this mesh, for pairs of nodes on different servers (repeatable)"},
		metricsFlag(),
		uiFlag(),
		stateDirFlag(),
		storeFlag(),
		&cli.BoolFlag{Name: "open", Usage: "seed-compatible mode: plain HTTP, no join keys, NO AUTHENTICATION (for migrating from meshpop-wire)"},
		&cli.StringFlag{Name: "subnet", Usage: "VPN subnet: 10.99 means 10.99.0.0/16; a CIDR works too", Value: server.DefaultSubnet, EnvVars: []string{"WIRE_VPN_SUBNET"}},
		&cli.StringFlag{Name: "dns-domain", Usage: "the mesh's DNS domain: every node is reachable as NAME.DOMAIN", Value: api.DefaultDNSDomain},
		&cli.StringSliceFlag{Name: "trusted-proxy", Usage: "trust X-Forwarded-For from this address or CIDR (repeatable)"},
		&cli.StringFlag{Name: "import", Usage: "import the nodes of a meshpop-wire state.json once", EnvVars: []string{"WIRE_STATE_FILE"}},
		&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
	}
}

const defaultListen = ":8787"

// serverConfig is the server's configuration from its flags, with its
// state in dir.
func serverConfig(c *cli.Context, dir string) (server.Config, error) {
	subnet, err := server.ParseSubnet(c.String("subnet"))
	if err != nil {
		return server.Config{}, err
	}
	listen := c.String("listen")
	if p := os.Getenv("WIRE_PORT"); p != "" && !c.IsSet("listen") {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65534 {
			return server.Config{}, fmt.Errorf("WIRE_PORT=%q: want a port from 1 to 65534", p)
		}
		listen = ":" + p
	}
	proxies, err := parsePrefixes(c.StringSlice("trusted-proxy"))
	if err != nil {
		return server.Config{}, err
	}
	domain, err := server.ParseDNSDomain(c.String("dns-domain"))
	if err != nil {
		return server.Config{}, err
	}
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	metrics, err := metricsAddr(c)
	if err != nil {
		return server.Config{}, err
	}
	relayRate, err := parseBitRate(c.String("relay-rate"))
	if err != nil {
		return server.Config{}, fmt.Errorf("--relay-rate: %w", err)
	}
	return server.Config{
		StateDir: dir, Store: c.String("store"), Listen: listen, STUNListen: c.String("stun-listen"), RelayListen: c.String("relay-listen"), RelayRate: relayRate, RelayPeers: c.StringSlice("relay-peer"), Open: c.Bool("open"),
		MetricsListen: metrics,
		Subnet:        subnet, DNSDomain: domain, TrustedProxies: proxies, SeedStateFile: c.String("import"), Version: buildVersion(),
		Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})),
	}, nil
}

// parseBitRate reads a rate in bits per second: a number with an SI
// suffix (k, M, G, T) or none, or "unlimited".
func parseBitRate(s string) (rate.Limit, error) {
	if s == "unlimited" {
		return rate.Inf, nil
	}
	num, scale := s, 1.0
	if i := strings.IndexAny(s, "kMGT"); i >= 0 && i == len(s)-1 {
		num, scale = s[:i], map[byte]float64{'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12}[s[i]]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q: want bits per second such as 500M, 2G or 10G, or unlimited", s)
	}
	return rate.Limit(v * scale), nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxy %q: want an address or CIDR", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// serverGCPercent is the server's GOGC unless the environment sets one.
// Its heap is mostly state that lives as long as a node's connection, and
// it allocates little per request: collecting at 25% growth rather than
// Go's 100% keeps its RSS near the live heap (at 10,000 nodes 559 MiB
// rather than 905) for a GC share of CPU that stays in the noise.
const serverGCPercent = 25

func runServer(c *cli.Context) error {
	dir, err := serverStateDir(c)
	if err != nil {
		return err
	}
	cfg, err := serverConfig(c, dir)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
	uiAt, err := listenAddr(c, "ui-listen")
	if err != nil {
		return err
	}
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	var ui net.Listener
	if uiAt != "" {
		if ui, err = net.Listen("tcp", uiAt); err != nil {
			return fmt.Errorf("dashboard listen on %s: %w (see --ui-listen)", uiAt, err)
		}
	}
	printBanner(c.App.Writer, c.App.ErrWriter, s, cfg)
	if ui != nil {
		fmt.Fprintf(c.App.Writer, "Dashboard:          http://%s/ (log in with %s)\n", ui.Addr(), filepath.Join(cfg.StateDir, server.TokenFile))
	}
	// The listeners are bound: a Type=notify unit's start succeeds now.
	if err := service.Notify("READY=1"); err != nil {
		cfg.Logger.Warn("telling systemd that the server is ready", "err", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if ui != nil {
		d := dashboard.New(s, dashboard.Options{Token: s.Identity().AdminToken, Logger: cfg.Logger})
		go func() {
			if err := d.Serve(ctx, ui); err != nil {
				cfg.Logger.Error("the dashboard stopped", "err", err)
			}
		}()
	}
	return s.Run(ctx)
}

func printBanner(w, ew io.Writer, s *server.Server, cfg server.Config) {
	fmt.Fprintf(w, "wire server %s\n", cfg.Version)
	fmt.Fprintf(w, "  HTTP  %-28s register / peers / status / health / ip / punch\n", s.URL())
	fmt.Fprintf(w, "  STUN  udp %-24s NAT port discovery\n", s.STUNAddr())
	if !cfg.Open {
		fmt.Fprintf(w, "  RELAY udp %-24s for pairs that cannot connect directly (ciphertext only)\n", s.RelayAddr())
	}
	if a := s.MetricsAddr(); a != nil {
		fmt.Fprintf(w, "  METRICS http://%s/metrics (Prometheus; no authentication)\n", a)
	}
	fmt.Fprintf(w, "  state %s\n", cfg.StateDir)
	if cfg.Store != "" {
		fmt.Fprintf(w, "  store %s (shared with the mesh's other servers)\n", s.StorePath())
	}
	fmt.Fprintf(w, "  VPN   %s\n", cfg.Subnet)
	if cfg.Open {
		fmt.Fprint(ew, openWarning)
		return
	}
	fmt.Fprintf(w, "  pin   %s (curl --pinnedpubkey)\n", s.Identity().Pin.Curl())
	if cfg.Store != "" {
		fmt.Fprintln(w, "Create a join key:  wire server key create --store URL")
	} else {
		fmt.Fprintf(w, "Create a join key:  wire server key create --state-dir %s\n", cfg.StateDir)
	}
	fmt.Fprintf(w, "Then on each node:  sudo wire up --server https://THIS_HOST:%s --join KEY\n", portOf(s.Addr()))
}

const openWarning = `
  ************************************************************************
  *  WARNING: --open mode. NO AUTHENTICATION AND NO ENCRYPTION.          *
  *  Anyone who can reach this port can register, overwrite any node's  *
  *  record and read the whole peer list. Use it only to migrate from    *
  *  meshpop-wire, on a network you trust; then restart without --open.  *
  ************************************************************************
`

// oneArg returns a command's one argument. Options must come before it
// (they are read only up to the first argument): say so, rather than
// "wrong number of arguments".
func oneArg(c *cli.Context, cmd string) (string, error) {
	if c.NArg() > 1 && strings.HasPrefix(c.Arg(1), "-") {
		return "", fmt.Errorf("options go before the argument: %s %s %s", cmd, strings.Join(c.Args()[1:], " "), c.Arg(0))
	}
	if c.NArg() != 1 {
		return "", fmt.Errorf("usage: %s [options] %s", cmd, c.Command.ArgsUsage)
	}
	return c.Arg(0), nil
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy the mesh to another store (SQLite to PostgreSQL, or back); no node enrols again",
		Description: "Stop the server first: what it writes after the copy would be lost. Then start the servers\n" +
			"with --store set to the new store, each with the TLS key and admin token of the old state dir.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the store to copy: sqlite:STATE_DIR (or its wire.db), or a postgres:// URL", Required: true},
			&cli.StringFlag{Name: "to", Usage: "the empty store to copy into: a postgres:// URL, or sqlite:STATE_DIR", Required: true},
		},
		Action: noArgs(migrateStore),
	}
}

func migrateStore(c *cli.Context) error {
	from, fromDir, err := openMigrateStore(c, "from")
	if err != nil {
		return err
	}
	defer from.Close()
	to, _, err := openMigrateStore(c, "to")
	if err != nil {
		return err
	}
	defer to.Close()
	pin := ""
	if fromDir != "" {
		// The servers of the new store present this server's key.
		if _, err := os.Stat(filepath.Join(fromDir, server.KeyFile)); err == nil {
			id, err := server.LoadIdentity(fromDir)
			if err != nil {
				return err
			}
			pin = id.Pin.String()
		}
	}
	rep, err := server.Migrate(c.Context, from, to, pin)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "copied %d nodes, %d join keys and %d settings from %s to %s, and read them back.\n",
		rep.Nodes, rep.Keys, rep.Settings, from.Path(), to.Path())
	if fromDir != "" {
		fmt.Fprintf(c.App.Writer, "Start each server with --store %s and a state dir holding %s and %s from %s.\n",
			c.String("to"), server.KeyFile, server.TokenFile, fromDir)
	}
	return nil
}

// openMigrateStore opens --from or --to; for a SQLite store it also
// returns its state dir. The source must exist.
func openMigrateStore(c *cli.Context, flag string) (*server.Store, string, error) {
	v := c.String(flag)
	if server.IsPostgres(v) {
		s, err := server.OpenPostgres(c.Context, v)
		return s, "", err
	}
	path, ok := strings.CutPrefix(v, "sqlite:")
	if !ok || path == "" {
		return nil, "", fmt.Errorf("--%s %q: want sqlite:STATE_DIR or a postgres:// URL", flag, v)
	}
	if filepath.Base(path) == server.StoreFile {
		path = filepath.Dir(path)
	}
	if _, err := os.Stat(filepath.Join(path, server.StoreFile)); flag == "from" && err != nil {
		return nil, "", fmt.Errorf("--from %s: no wire store there (%v)", v, err)
	}
	s, err := server.OpenStore(path)
	return s, path, err
}
