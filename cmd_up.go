package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/internal/progress"
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
// a running daemon (status, peers, ping, and down, whose daemon then says
// it needs root) fall back from ~/.wire to /etc/wire, so a user reaches the
// system daemon without sudo.
func nodeStateDir(c *cli.Context, reading bool) (string, error) {
	flag := givenStateDir(c)
	home, err := os.UserHomeDir()
	if err != nil && flag == "" && os.Geteuid() != 0 {
		return "", fmt.Errorf("no home directory (%v): pass --state-dir", err)
	}
	hasSocket := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, node.SocketFile))
		return err == nil
	}
	return stateDirFor(flag, os.Geteuid(), home, reading, hasSocket), nil
}

// givenStateDir is --state-dir as given to the command or to a command it
// is a subcommand of ("wire pair --state-dir DIR join CODE"): a
// subcommand sees only its own flags.
func givenStateDir(c *cli.Context) string {
	for ctx := c; ctx != nil; ctx = ctx.Parent {
		if ctx.IsSet("state-dir") {
			return ctx.String("state-dir")
		}
	}
	return ""
}

// stateDirFor is nodeStateDir's choice: the flag, root's dir for root,
// else the user's, or root's when reading and the user runs no daemon.
func stateDirFor(flag string, euid int, home string, reading bool, hasSocket func(string) bool) string {
	switch {
	case flag != "":
		return flag
	case euid == 0:
		return node.RootDir
	}
	dir := filepath.Join(home, ".wire")
	if reading && !hasSocket(dir) {
		return node.RootDir
	}
	return dir
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
			&cli.StringSliceFlag{Name: "server", Aliases: []string{"s"}, Usage: "coordination server URL (saved); repeat it for the servers of a mesh with replicas, tried in turn"},
			&cli.StringFlag{Name: "join", Aliases: []string{"j"}, Usage: "join key from 'wire server key create' on the server (first time only)", EnvVars: []string{"WIRE_JOIN_KEY"}},
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "this node's name (default: the hostname)"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "WireGuard listen port", Value: node.DefaultPort},
			&cli.StringFlag{Name: "interface", Usage: "interface name (one per node on a host)", Value: defaultInterface},
			&cli.StringFlag{Name: "node-id", Usage: "this node's id at the server, when joining (default: a hash of the host and the state dir; the seed's sha256(hostname + MAC) in the default state dir)"},
			&cli.StringFlag{Name: "engine", Usage: "WireGuard engine: auto, kernel or userspace", Value: "auto"},
			nodeStateDirFlag(),
			metricsFlag(),
			&cli.BoolFlag{Name: "accept-dns", Usage: "point this system's resolver at wire's for the mesh's names (saved; --accept-dns=false leaves the system alone)", Value: true},
			&cli.BoolFlag{Name: "foreground", Usage: "run the daemon in this process (for service managers and tests)"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
		},
		Action: noArgs(runUp),
	}
}

func runUp(c *cli.Context) error {
	dir, err := nodeStateDir(c, false)
	if err != nil {
		return err
	}
	if st, err := node.NewClient(dir).Status(c.Context); err == nil {
		return alreadyUp(c, dir, st)
	}
	cfg, err := upConfig(c, dir)
	if err != nil {
		return err
	}
	if c.Bool("foreground") {
		return runDaemon(c, dir)
	}
	if err := startDaemon(c, dir, cfg); err != nil {
		// The node is enrolled and its config saved: the same command, or
		// plain wire up, tries again. Until then it is not in the mesh.
		node.Offline(c.Context, dir)
		return err
	}
	return nil
}

// alreadyUp answers wire up on a node whose daemon runs: fine if every
// flag given says what already is, an error naming the ones that differ
// otherwise. Flags are never ignored silently.
func alreadyUp(c *cli.Context, dir string, st node.Status) error {
	var differ []string
	same := func(flag, have string, equal func(a, b string) bool) {
		if c.IsSet(flag) && !equal(c.String(flag), have) {
			differ = append(differ, fmt.Sprintf("--%s %s (it runs with %s)", flag, c.String(flag), have))
		}
	}
	exact := func(a, b string) bool { return a == b }
	if c.IsSet("server") && !sameServers(c.StringSlice("server"), append([]string{st.ServerURL}, st.OtherServers...)) {
		differ = append(differ, fmt.Sprintf("--server %s (it runs with %s)", strings.Join(c.StringSlice("server"), " --server "),
			strings.Join(append([]string{st.ServerURL}, st.OtherServers...), ", ")))
	}
	same("name", st.NodeName, strings.EqualFold)
	same("port", strconv.Itoa(st.ListenPort), exact)
	same("interface", st.Interface, exact)
	same("engine", st.Engine, func(a, b string) bool { return a == wg.KindAuto || a == b })
	if c.IsSet("node-id") {
		differ = append(differ, "--node-id (only for joining)")
	}
	if c.IsSet("metrics-listen") {
		want, err := metricsAddr(c)
		if err != nil {
			return err
		}
		if cfg, _ := node.LoadConfig(dir); want != cfg.MetricsListen {
			differ = append(differ, fmt.Sprintf("--metrics-listen %s (it runs with %s)", c.String("metrics-listen"), cmp.Or(cfg.MetricsListen, "off")))
		}
	}
	if c.IsSet("join") {
		if err := joinKeyFits(c.String("join"), dir); err != nil {
			return err
		}
	}
	if st.Removed {
		differ = append(differ, "this node was removed from its mesh")
	}
	if len(differ) > 0 {
		return fmt.Errorf("wire is already up as %s (%s on %s), and not as asked: %s. To change it: sudo wire down, then sudo wire up with those flags",
			st.NodeName, st.VPNIP, st.Interface, strings.Join(differ, "; "))
	}
	if c.IsSet("join") && st.Expired {
		st, err := node.NewClient(dir).Authenticate(c.Context, c.String("join"))
		if err != nil {
			return fmt.Errorf("authenticating this node again: %w", err)
		}
		fmt.Fprintf(c.App.Writer, "authenticated again: %s %s is back in the mesh\n", st.NodeName, st.VPNIP)
		return nil
	}
	note := ""
	if c.IsSet("join") {
		note = " (already joined: the join key was not used)"
	}
	fmt.Fprintf(c.App.Writer, "wire is already up: %s %s on %s%s\n", st.NodeName, st.VPNIP, st.Interface, note)
	return nil
}

// sameServers says whether the URLs in flags name the servers in have, in
// any order.
func sameServers(flags, have []string) bool {
	want := map[string]bool{}
	for _, f := range flags {
		u, err := api.ParseServerURL(f)
		if err != nil {
			return false
		}
		want[u.String()] = true
	}
	if len(want) != len(have) {
		return false
	}
	for _, h := range have {
		if !want[h] {
			return false
		}
	}
	return true
}

// joinKeyFits checks a join key given to a node that is up: it must be a
// key, and one for the server this node is joined to.
func joinKeyFits(key, dir string) error {
	k, err := api.ParseJoinKey(key)
	if err != nil {
		return fmt.Errorf("--join: %w", err)
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		return err
	}
	if k.Pin.String() != cfg.ServerPin {
		return fmt.Errorf("--join: the key is for another server than %s, which this node is joined to; to move it: sudo wire down, then sudo wire up --server URL --join KEY", cfg.ServerURL)
	}
	return nil
}

// joinOptions are a join's options, from the flags; and whether to accept
// the mesh's DNS, if said. A node that joined before and is given only a
// key (to authenticate again, its enrolment expired) keeps its servers,
// and its port, interface and DNS setting where no flag says otherwise.
func joinOptions(c *cli.Context, dir string) (node.JoinOptions, *bool, error) {
	o := node.JoinOptions{Dir: dir, JoinKey: c.String("join"), Name: c.String("name"),
		Port: c.Int("port"), Interface: c.String("interface"), NodeID: c.String("node-id")}
	var acceptDNS *bool
	if c.IsSet("accept-dns") {
		accept := c.Bool("accept-dns")
		acceptDNS = &accept
	}
	servers := c.StringSlice("server")
	if !c.IsSet("server") {
		saved, err := node.LoadConfig(dir)
		if err != nil || saved.ServerPin == "" {
			return o, nil, errors.New("--join needs --server URL too")
		}
		servers = saved.Servers()
		if !c.IsSet("port") {
			o.Port = saved.ListenPort
		}
		if !c.IsSet("interface") {
			o.Interface = saved.Interface
		}
		if acceptDNS == nil {
			acceptDNS = saved.AcceptDNS
		}
	}
	o.ServerURL, o.OtherServers = servers[0], servers[1:]
	return o, acceptDNS, nil
}

// upConfig joins (with --server) or loads the saved config, applying the
// flags the user set. What this machine must have for the node to run is
// checked first, before a join spends its key.
func upConfig(c *cli.Context, dir string) (node.Config, error) {
	metrics, err := metricsAddr(c)
	if err != nil {
		return node.Config{}, err
	}
	if c.IsSet("join") || (c.IsSet("server") && !pinned(dir)) {
		o, acceptDNS, err := joinOptions(c, dir)
		if err != nil {
			return node.Config{}, err
		}
		if err := node.Preflight(c.String("engine"), o.Interface, o.Port); err != nil {
			return node.Config{}, err
		}
		ctx, cancel := context.WithTimeout(c.Context, 15*time.Second)
		defer cancel()
		line := progress.On(c.App.ErrWriter)
		o.Progress = func(step string) { line.Show("wire up: %s…", step) }
		cfg, err := node.Join(ctx, o)
		line.Clear()
		if err != nil || (acceptDNS == nil && !c.IsSet("metrics-listen")) {
			return cfg, err
		}
		cfg.AcceptDNS = acceptDNS
		if c.IsSet("metrics-listen") {
			cfg.MetricsListen = metrics
		}
		return cfg, cfg.Save(dir)
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		return cfg, err
	}
	changed := false
	if c.IsSet("server") {
		// A node joined to a server with a pinned key may be pointed at
		// others of its mesh without joining again: the pin still decides
		// which servers it trusts.
		if err := cfg.SetServers(c.StringSlice("server")); err != nil {
			return cfg, err
		}
		changed = true
	}
	for flag, set := range map[string]func(){
		"port":      func() { cfg.ListenPort = c.Int("port") },
		"interface": func() { cfg.Interface = c.String("interface") },
		"name": func() {
			if name := c.String("name"); name != cfg.NodeName {
				cfg.NodeName, cfg.Rename = name, true // until the server holds it
			}
		},
		"accept-dns": func() {
			accept := c.Bool("accept-dns")
			cfg.AcceptDNS = &accept
		},
		"metrics-listen": func() { cfg.MetricsListen = metrics },
	} {
		if c.IsSet(flag) {
			set()
			changed = true
		}
	}
	if cfg.Interface == "" {
		cfg.Interface = defaultInterface
	}
	if err := node.Preflight(c.String("engine"), cfg.Interface, cfg.ListenPort); err != nil {
		return cfg, err
	}
	if changed {
		return cfg, cfg.Save(dir)
	}
	return cfg, nil
}

// pinned says whether the node in dir has joined a server with a pinned
// key (not an --open one).
func pinned(dir string) bool {
	cfg, err := node.LoadConfig(dir)
	return err == nil && cfg.ServerPin != ""
}

func runDaemon(c *cli.Context, dir string) error {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	kind := c.String("engine")
	d, err := node.New(node.Options{Dir: dir, Logger: log, ResolvConf: "/etc/resolv.conf", ResolverDir: "/etc/resolver", Version: buildVersion(), NewEngine: func(o wg.Options) (wg.Engine, error) {
		o.Kind = kind
		return wg.New(o)
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
	exited := make(chan string, 1)
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
		go func() {
			if st, err := p.Wait(); err != nil {
				exited <- err.Error()
			} else {
				exited <- st.String() // "exit status 1"
			}
		}()
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	line := progress.On(c.App.ErrWriter)
	line.Show("wire up: starting the daemon…")
	st, err := node.WaitUp(ctx, dir, exited)
	line.Clear()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wire is up: %s %s on %s (%s)\n", st.NodeName, st.VPNIP, st.Interface, st.Engine)
	if line.Live() { // a person watches: show the first tunnel come up
		firstHandshake(c, dir, line)
	}
	return nil
}

// firstHandshake waits, showing it, for the node's first handshake with a
// peer, for at most handshakeWait; it says which peer, or that none came.
// Only a person at a terminal waits for it: wire up on a pipe returns as
// soon as the daemon runs.
func firstHandshake(c *cli.Context, dir string, line *progress.Line) {
	start := time.Now()
	client := node.NewClient(dir)
	for time.Since(start) < handshakeWait && c.Context.Err() == nil {
		ps, err := client.Peers(c.Context)
		if err != nil || len(ps) == 0 {
			return // no daemon to ask, or no peer to wait for
		}
		for _, p := range ps {
			if p.LatestHandshake != nil {
				line.Clear()
				fmt.Fprintf(c.App.Writer, "first handshake: %s (%s) after %.1f s, path %s\n", shown(p.NodeName), shown(p.VPNIP), time.Since(start).Seconds(), p.Path)
				return
			}
		}
		line.Show("wire up: waiting for the first handshake with one of %d peers… %ds (Ctrl-C leaves wire running)", len(ps), int(time.Since(start).Seconds()))
		select {
		case <-c.Context.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	line.Clear()
	if c.Context.Err() == nil {
		fmt.Fprintf(c.App.Writer, "no handshake with a peer within %v: wire status and wire netcheck say more\n", handshakeWait)
	}
}

// handshakeWait bounds firstHandshake.
const handshakeWait = 15 * time.Second
