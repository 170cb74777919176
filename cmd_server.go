package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/service"
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
		&cli.StringSliceFlag{Name: "relay-peer", Usage: "the relay (HOST:PORT) of another server of this mesh, for pairs of nodes on different servers (repeatable)"},
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
	return server.Config{
		StateDir: dir, Store: c.String("store"), Listen: listen, STUNListen: c.String("stun-listen"), RelayListen: c.String("relay-listen"), RelayPeers: c.StringSlice("relay-peer"), Open: c.Bool("open"),
		Subnet: subnet, DNSDomain: domain, TrustedProxies: proxies, SeedStateFile: c.String("import"), Version: buildVersion(),
		Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})),
	}, nil
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
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	printBanner(c.App.Writer, c.App.ErrWriter, s, cfg)
	// The listeners are bound: a Type=notify unit's start succeeds now.
	if err := service.Notify("READY=1"); err != nil {
		cfg.Logger.Warn("telling systemd that the server is ready", "err", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

func printBanner(w, ew io.Writer, s *server.Server, cfg server.Config) {
	fmt.Fprintf(w, "wire server %s\n", cfg.Version)
	fmt.Fprintf(w, "  HTTP  %-28s register / peers / status / health / ip / punch\n", s.URL())
	fmt.Fprintf(w, "  STUN  udp %-24s NAT port discovery\n", s.STUNAddr())
	if !cfg.Open {
		fmt.Fprintf(w, "  RELAY udp %-24s for pairs that cannot connect directly (ciphertext only)\n", s.RelayAddr())
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
// (urfave/cli stops parsing them at the first argument): say so, rather
// than "wrong number of arguments".
func oneArg(c *cli.Context, cmd string) (string, error) {
	if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
		return "", fmt.Errorf("options go before the argument: %s %s %s", cmd, strings.Join(c.Args().Tail(), " "), c.Args().First())
	}
	if c.NArg() != 1 {
		return "", fmt.Errorf("usage: %s [options] %s", cmd, c.Command.ArgsUsage)
	}
	return c.Args().First(), nil
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "manage join keys",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "create a join key; it is printed once, as the last line",
			Flags: []cli.Flag{
				stateDirFlag(),
				storeFlag(),
				&cli.BoolFlag{Name: "reusable", Usage: "admit any number of nodes until it expires, not just one"},
				&cli.StringFlag{Name: "ttl", Usage: "how long the key is valid: 30m, 24h, 7d (1m to 365d)", Value: "24h"},
				&cli.StringSliceFlag{Name: "tag", Usage: "give the nodes it enrols this tag, for the policy: tag:server (repeatable)"},
			},
			Action: noArgs(createKey),
		}},
	}
}

// parseTTL reads --ttl: a Go duration (90m, 24h) or whole days (7d), from
// minTTL to maxTTL.
func parseTTL(s string) (time.Duration, error) {
	var ttl time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		ttl = time.Duration(n) * 24 * time.Hour
		if n > 10*365 {
			ttl = maxTTL + 1
		}
	} else {
		ttl, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("--ttl %q: want a duration such as 30m, 24h or 7d", s)
	}
	if ttl < minTTL || ttl > maxTTL {
		return 0, fmt.Errorf("--ttl %s: want a duration from 1m to 365d", s)
	}
	return ttl, nil
}

// A key lives long enough to be copied to a node, and is never forever
// in all but name.
const (
	minTTL = time.Minute
	maxTTL = 365 * 24 * time.Hour
)

func createKey(c *cli.Context) error {
	ttl, err := parseTTL(c.String("ttl"))
	if err != nil {
		return err
	}
	store, pin, err := openKeyStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	tags, err := declaredTags(c.Context, store, c.StringSlice("tag"))
	if err != nil {
		return err
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	key, err := store.CreateKey(c.Context, pin, c.Bool("reusable"), expires, tags)
	if err != nil {
		return err
	}
	kind := "single-use"
	if c.Bool("reusable") {
		kind = "reusable"
	}
	if len(tags) > 0 {
		kind += " " + tagList(tags)
	}
	fmt.Fprintf(c.App.Writer, "%s join key, valid until %s (shown only now):\n%s\n", kind, expires.Format(time.RFC3339), key)
	return nil
}

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:   "nodes",
		Usage:  "list the enrolled nodes",
		Flags:  withState(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: noArgs(listNodes),
	}
}

func listNodes(c *cli.Context) error {
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	nodes, err := store.List(c.Context, time.Now())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(nodes)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVPN IP\tPUBLIC\tSTATUS\tLAST SEEN\tTAGS")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shown(n.NodeName), n.VPNIP, shown(endpoint(n.PublicIP, n.NATPort)), n.Status, ago(n.LastSeenAgo), tagColumn(n.Tags))
	}
	return tw.Flush()
}

// openExistingStore opens the store without creating one: listing or
// removing nodes of a server that never ran is a mistake in --state-dir.
func openExistingStore(c *cli.Context) (*server.Store, error) {
	if store := c.String("store"); store != "" {
		return server.OpenStoreAt(c.Context, "", store)
	}
	dir, err := serverStateDir(c)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, server.StoreFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no wire server state in %s: has the server run there? (pass --state-dir, or --store)", dir)
	}
	return server.OpenStore(dir)
}

// openKeyStore opens the store that a join key is created in, and returns
// the pin of the servers the key is for: the state dir's TLS key (made on
// first use, before the server first runs), or for a shared store the pin
// its servers recorded, so that an admin needs no server's state dir.
func openKeyStore(c *cli.Context) (*server.Store, api.Pin, error) {
	dir, err := serverStateDir(c)
	if err != nil {
		return nil, api.Pin{}, err
	}
	store, err := server.OpenStoreAt(c.Context, dir, c.String("store"))
	if err != nil {
		return nil, api.Pin{}, err
	}
	if !store.Shared() {
		id, err := server.LoadIdentity(dir)
		if err != nil {
			store.Close()
			return nil, api.Pin{}, err
		}
		return store, id.Pin, nil
	}
	pin, err := store.ServerPin(c.Context)
	if err != nil {
		store.Close()
		return nil, api.Pin{}, err
	}
	return store, pin, nil
}

func endpoint(ip string, port int) string {
	if ip == "" {
		return "-"
	}
	if port == 0 {
		return ip
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

func ago(secs int64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", secs)
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage one node",
		Subcommands: []*cli.Command{{
			Name:      "remove",
			Usage:     "remove a node: its key stops working and its address is freed",
			ArgsUsage: "NAME",
			Flags:     withState(),
			Action:    removeNode,
		}, {
			Name:      "tag",
			Usage:     "replace a node's tags, for the policy (in force within a second)",
			ArgsUsage: "NAME TAG...",
			Flags:     withState(&cli.BoolFlag{Name: "clear", Usage: "remove all of the node's tags"}),
			Action:    tagNode,
		}},
	}
}

func removeNode(c *cli.Context) error {
	name, err := oneArg(c, "wire server node remove")
	if err != nil {
		return err
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	removed, err := store.RemoveNode(c.Context, name)
	if errors.Is(err, server.ErrNotFound) {
		return fmt.Errorf("no node named %q (see wire server nodes)", name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed %s\n", removed)
	return nil
}

func tagNode(c *cli.Context) error {
	name, tags := c.Args().First(), c.Args().Tail()
	switch {
	case name == "":
		return errors.New("usage: wire server node tag NAME TAG... (or --clear NAME)")
	case len(tags) == 0 && !c.Bool("clear"):
		return fmt.Errorf("no tags for %s: name them (tag:server), or pass --clear to remove all", name)
	case len(tags) > 0 && c.Bool("clear"):
		return errors.New("--clear takes no tags")
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	tags, err = declaredTags(c.Context, store, tags)
	if err != nil {
		return err
	}
	stored, err := store.SetNodeTags(c.Context, name, tags)
	if errors.Is(err, server.ErrNotFound) {
		return fmt.Errorf("no node named %q (see wire server nodes)", name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %s\n", stored, tagList(tags))
	return nil
}

// declaredTags checks tags' syntax, and that the policy in force (if any)
// declares them: a tag no rule can name is a typo.
func declaredTags(ctx context.Context, store *server.Store, tags []string) ([]string, error) {
	tags, err := server.ParseTags(tags)
	if err != nil || len(tags) == 0 {
		return tags, err
	}
	p, err := store.ParsedPolicy(ctx)
	if err != nil || p == nil {
		return tags, err
	}
	for _, t := range tags {
		if !p.HasTag(t) {
			return nil, fmt.Errorf("%s is not declared in the policy's tagOwners: add it there first (wire server policy get)", t)
		}
	}
	return tags, nil
}

func tagList(tags []string) string {
	if len(tags) == 0 {
		return "no tags"
	}
	return strings.Join(tags, ",")
}

func tagColumn(tags []string) string {
	if len(tags) == 0 {
		return "-"
	}
	return strings.Join(tags, ",")
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
