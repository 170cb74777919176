// Package sysdns points the operating system's resolver at wire's for the
// mesh's domain, and puts back exactly what was there before.
package sysdns

import (
	"log/slog"
	"net/netip"
)

// Config is what the system should do with the mesh's names.
type Config struct {
	// Interface is wire's network interface.
	Interface string
	// Nameserver is wire's resolver.
	Nameserver netip.Addr
	// Domain is the mesh's DNS domain (without the final dot).
	Domain string
}

// Options configure a Manager.
type Options struct {
	// StateDir is where the system's settings from before wire are kept
	// until they are put back (so that a crash loses nothing).
	StateDir string
	// ResolvConf is the system's resolver config (/etc/resolv.conf).
	ResolvConf string
	// ResolverDir is macOS's per-domain resolver dir (/etc/resolver).
	ResolverDir string
	Logger      *slog.Logger
}

// Manager sets and reverts the system's DNS settings. Set may be called
// again and again with the same result; Revert puts back what was there
// before the first Set, also after a crash (a Manager made from the same
// state dir finds what the crashed one kept).
type Manager struct {
	opts Options
	log  *slog.Logger
	os   platform
}

// platform is one operating system's way of doing it.
type platform interface {
	// mode names the way chosen, for status and logs.
	mode() string
	set(Config) error
	revert() error
	// upstream is the resolv.conf with the system's own nameservers: the
	// one from before wire, if wire replaced it.
	upstream() string
}

// New returns a manager for this system.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts, log: opts.Logger, os: newPlatform(opts)}
}

// Mode says how the system is pointed at wire's resolver.
func (m *Manager) Mode() string { return m.os.mode() }

// Set points the system at wire's resolver for cfg.Domain.
func (m *Manager) Set(cfg Config) error { return m.os.set(cfg) }

// Revert puts the system's settings back as they were before wire.
func (m *Manager) Revert() error { return m.os.revert() }

// Upstream is the resolv.conf naming the system's own resolvers.
func (m *Manager) Upstream() string { return m.os.upstream() }
