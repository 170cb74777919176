// Package wg is wire's WireGuard engine: one small interface over kernel
// WireGuard (through wgctrl and netlink) and the embedded wireguard-go on a
// TUN (Linux) or utun (macOS) device.
package wg

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/relay"
)

// Key is a WireGuard key (private or public).
type Key = wgtypes.Key

// Keepalive is the PersistentKeepalive every peer gets, as in the seed.
const Keepalive = 25 * time.Second

// Config is the desired state of the interface.
type Config struct {
	PrivateKey Key
	// ListenPort is the UDP port to listen on; zero keeps the engine's
	// port (Options.ListenPort, or the one it chose: see Engine.Port).
	ListenPort int
	// Address is this node's VPN address with the VPN subnet's length
	// (10.99.23.187/16), so the subnet routes through the interface.
	Address netip.Prefix
	Peers   []Peer
	// Filter is what the node accepts from its peers over the mesh; nil
	// accepts everything (the mesh has no policy). The userspace engine
	// filters the packets wireguard-go writes to its TUN device; the
	// kernel engine programs nftables: the table inet wire, which is
	// wire's alone in its network namespace.
	Filter filter.Rules
}

// Peer is one desired peer.
type Peer struct {
	PublicKey Key
	// Endpoint is where to send; the zero value leaves it to roaming.
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
}

// Patch is a change to the peers of the Config applied last: each peer of
// Peers is added, or replaces the one with its key; each key of Remove
// goes. The rest of the Config stays as it is.
type Patch struct {
	Peers  []Peer
	Remove []Key
}

// PeerStatus is what the engine knows of a peer now.
type PeerStatus struct {
	PublicKey     Key
	Endpoint      netip.AddrPort
	LastHandshake time.Time // zero if never
	RxBytes       int64
	TxBytes       int64
	// Idle says that the engine holds the peer back from WireGuard until
	// it has traffic (the userspace engine, see lazy.go): it has no
	// session, and Endpoint is the one it was given.
	Idle bool
}

// Engine is a WireGuard interface that wire configures.
//
// Set applies a desired state and may be called again and again: peers
// not in cfg are removed, peers whose settings did not change keep their
// sessions untouched, and changed endpoints or allowed IPs are updated in
// place. Peers reports the live state. Close removes the interface.
//
// All methods are safe for concurrent use, from any goroutine: an engine
// stays in the network namespace it was created in (see New).
type Engine interface {
	Set(cfg Config) error
	// Patch applies a change to the peers, as Set would with the whole
	// Config so changed, in time that grows with the change, not with the
	// mesh; a peer it does not name is not looked at. It fails before the
	// first Set. After it fails, the next call should be a Set.
	Patch(p Patch) error
	Peers() ([]PeerStatus, error)
	// Discover asks the STUN server for the public address of the
	// WireGuard port, sending from that port itself so that the mapping a
	// NAT reports is the one peers can reach. It retransmits until an
	// answer comes or ctx is done. Once WireGuard holds the port, a kernel
	// engine sends through raw sockets; where it cannot open them, the
	// error wraps errors.ErrUnsupported.
	Discover(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error)
	// Probe checks that to, a peer's direct endpoint, answers on its
	// WireGuard port, sending from this one (which also opens this side's
	// NAT towards it); it returns the round-trip time. A kernel engine
	// without raw sockets cannot: the error wraps errors.ErrUnsupported.
	Probe(ctx context.Context, to netip.AddrPort) (time.Duration, error)
	// SetRelay makes c (nil: none) the way to peers whose endpoint is a
	// RelayEndpoint. The caller keeps owning c. (Kernel engines reach the
	// relay through a local proxy socket per relayed peer.)
	SetRelay(c *relay.Conn) error
	// Port is the UDP port WireGuard listens on (a kernel engine's before
	// its first Set: the port that Set will give it).
	Port() int
	Name() string
	Kind() string // "kernel" or "userspace"
	Close() error
}

// Engine kinds, for Options.Kind and Engine.Kind.
const (
	KindAuto      = "auto"      // kernel WireGuard if the system has it, else userspace
	KindKernel    = "kernel"    // Linux's wireguard module, configured through wgctrl
	KindUserspace = "userspace" // the embedded wireguard-go on a TUN device
)

// DefaultMTU is the interface MTU when Options.MTU is zero.
const DefaultMTU = 1420

// Options says which engine New makes. The zero value is ready to use.
type Options struct {
	// Name is the interface name: wire0 by default. On macOS it must be
	// "utun" (the default there; the system picks utunN) or utunN.
	Name string
	// Kind is KindAuto (the default), KindKernel or KindUserspace.
	Kind string
	// MTU is the interface MTU, DefaultMTU if zero.
	MTU int
	// ListenPort is the UDP port to listen on until a Config says
	// otherwise; zero picks a free one. Discover reports the mapping of
	// this port, so a node that discovers before its first Set should fix
	// it here.
	ListenPort int
	// PrivateKey, if set, is the key the engine will be configured with:
	// a kernel WireGuard link of the same name that has it was left by a
	// run of this same node that did not stop cleanly, and is replaced
	// rather than refused. Any other link of that name is refused.
	PrivateKey *Key
	// Logger receives the engine's and wireguard-go's messages (debug and
	// error); nil discards them. Nothing is ever printed.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = defaultName
	}
	if o.Kind == "" {
		o.Kind = KindAuto
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
