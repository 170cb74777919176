package wg

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/relay"
)

// userspace is the embedded wireguard-go on a TUN device, configured
// through its IPC text. It serves the standard UAPI socket too, for wg.
type userspace struct {
	name   string
	dev    *device.Device
	bind   *stunBind
	filter *filter.Filter // in the TUN device, as wireguard-go sees it
	lazy   *lazyPeers     // the peers, of which wireguard-go has the awake ones
	ns     namespace
	// stopSleeper ends the goroutine that puts idle peers to sleep.
	stopSleeper func()
	// uapi is the UAPI socket's listener, nil for devices made for tests;
	// uapiDone closes when its server has stopped.
	uapi     net.Listener
	uapiDone chan struct{}

	mu     sync.Mutex
	port   int // the port the device should listen on
	state  state
	closed bool
}

var _ Engine = (*userspace)(nil)

// newUserspace creates the TUN device in the current namespace and starts
// wireguard-go on it.
func newUserspace(opts Options) (*userspace, error) {
	ns, err := currentNamespace()
	if err != nil {
		return nil, err
	}
	tdev, nif, err := createTUN(opts.Name, opts.MTU, ns)
	if err != nil {
		ns.close()
		return nil, err
	}
	e, err := startUserspace(tdev, nif, conn.NewDefaultBind(), ns, opts)
	if err != nil {
		return nil, err
	}
	// By the device's own name: macOS picks utunN.
	ln, err := openUAPI(e.name)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.uapi, e.uapiDone = ln, make(chan struct{})
	go e.serveUAPI(ln)
	return e, nil
}

// startUserspace runs wireguard-go on tdev with bind as its sockets, and
// brings the interface up on opts.ListenPort. It owns what it is given:
// on failure everything is closed.
func startUserspace(tdev tun.Device, nif netif, bind conn.Bind, ns namespace, opts Options) (*userspace, error) {
	name, err := tdev.Name()
	if err != nil {
		name = opts.Name
	}
	log := opts.Logger.With("interface", name)
	sb := newBind(bind, ns)
	flt := filter.New()
	e := &userspace{name: name, bind: sb, filter: flt, ns: ns}
	e.lazy = newLazyPeers(e.apply, e.inDevice)
	sb.initiation = e.lazy.initiation
	e.dev = device.NewDevice(&filteredTUN{Device: tdev, filter: flt, lazy: e.lazy}, sb, deviceLogger(log))
	// A peer with an endpoint stays where wire put it: wire chooses the
	// path (direct or relay) and learns of moves from the server, and
	// roaming would let a stray relayed packet pull a direct peer back
	// onto the relay. Peers without an endpoint still learn one from
	// their packets.
	e.dev.DisableSomeRoamingForBrokenMobileSemantics()
	e.state = state{apply: e.lazy.apply, netif: nif, enforce: e.enforce}
	e.stopSleeper = every(sleepEvery, func() {
		if n := e.lazy.sleep(); n > 0 {
			log.Debug("idle peers taken out of WireGuard", "peers", n, "idle", idleAfter)
		}
	})
	if err := e.start(opts.ListenPort); err != nil {
		e.Close()
		return nil, err
	}
	e.port = e.Port()
	e.state.applied.ListenPort = e.port
	log.Debug("userspace WireGuard up", "port", e.Port())
	return e, nil
}

// start brings the interface and the device up, listening on port.
func (e *userspace) start(port int) error {
	if port != 0 {
		if err := e.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", port)); err != nil {
			return fmt.Errorf("wg: set listen port %d on %s: %w", port, e.name, err)
		}
	}
	if err := e.state.netif.up(); err != nil {
		return err
	}
	if err := e.dev.Up(); err != nil {
		return fmt.Errorf("wg: %s cannot listen on UDP port %d: %w (is another WireGuard or wire using it?)", e.name, port, err)
	}
	return nil
}

func (e *userspace) apply(d wgtypes.Config) error {
	if d.PrivateKey != nil {
		e.bind.setKey(*d.PrivateKey)
	}
	if slices.ContainsFunc(d.Peers, func(pc wgtypes.PeerConfig) bool { return pc.Remove }) {
		e.bind.crossings.reset() // see crossings.reset
	}
	if err := e.dev.IpcSet(ipcText(d)); err != nil {
		return fmt.Errorf("wg: configure %s: %w", e.name, err)
	}
	return nil
}

// enforce gives the TUN device's filter its rules.
func (e *userspace) enforce(r filter.Rules) error {
	e.filter.SetRules(r)
	return nil
}

// Set applies cfg. A zero ListenPort keeps the port: the one the device
// listens on, or if moving it failed, the one it should listen on.
func (e *userspace) Set(cfg Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.errClosed()
	}
	if err := validate(cfg); err != nil {
		return err
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = e.port
	}
	e.port = cfg.ListenPort
	return e.state.set(cfg)
}

func (e *userspace) Patch(p Patch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.errClosed()
	}
	return e.state.patch(p)
}

func (e *userspace) Peers() ([]PeerStatus, error) {
	if e.isClosed() {
		return nil, e.errClosed()
	}
	peers, err := e.inDevice()
	if err != nil {
		return nil, err
	}
	for k, pc := range e.lazy.sleeping() {
		p := PeerStatus{PublicKey: k, Idle: true}
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint.AddrPort()
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, comparePeers)
	return peers, nil
}

// inDevice is the state of the peers wireguard-go holds: the awake ones.
func (e *userspace) inDevice() ([]PeerStatus, error) {
	text, err := e.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wg: read the state of %s: %w", e.name, err)
	}
	return parsePeers(text)
}

// Asleep says whether the peer with key k is held back from wireguard-go
// until it has traffic (see lazy.go).
func (e *userspace) Asleep(k Key) bool { return e.lazy.isAsleep(k) }

func (e *userspace) Discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	return e.bind.discover(ctx, server)
}

// Probe checks the direct path to a peer's endpoint from the WireGuard port.
func (e *userspace) Probe(ctx context.Context, to netip.AddrPort) (time.Duration, error) {
	return e.bind.probe(ctx, to)
}

// SetRelay makes c the way to peers with relay endpoints.
func (e *userspace) SetRelay(c *relay.Conn) error {
	e.bind.relay.set(c)
	return nil
}

func (e *userspace) Port() int    { return int(e.bind.port.Load()) }
func (e *userspace) Name() string { return e.name }
func (e *userspace) Kind() string { return KindUserspace }

// Close stops wireguard-go, which closes the TUN device and so removes
// the interface, with its address and routes. Later calls do nothing.
func (e *userspace) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.stopSleeper()
	e.lazy.close() // no packet path waits for a wake, which would wait for Close
	if e.uapi != nil {
		e.uapi.Close() // removes the socket
		<-e.uapiDone
	}
	e.bind.shutdown()
	e.dev.Close()
	err := e.state.netif.remove()
	e.ns.close()
	return err
}

func (e *userspace) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (e *userspace) errClosed() error {
	return fmt.Errorf("wg: %s is closed: %w", e.name, net.ErrClosed)
}

func comparePeers(a, b PeerStatus) int {
	return slices.Compare(a.PublicKey[:], b.PublicKey[:])
}

// deviceLogger sends wireguard-go's messages to log: Verbosef at debug,
// Errorf at error, formatted only if the level is enabled.
func deviceLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: logf(log, slog.LevelDebug),
		Errorf:   logf(log, slog.LevelError),
	}
}

func logf(log *slog.Logger, level slog.Level) func(string, ...any) {
	return func(format string, args ...any) {
		if ctx := context.Background(); log.Enabled(ctx, level) {
			log.Log(ctx, level, fmt.Sprintf(format, args...))
		}
	}
}
