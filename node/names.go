package node

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/resolver"
	"github.com/wire-mesh/wire/sysdns"
)

// The daemon's resolver answers NAME.DOMAIN for this node and every peer
// it knows, on the node's own VPN address, port 53, and only to this
// host: the address is local on every engine and platform, so nothing is
// reserved for it, and no other node can ask it. Other names go to the
// system's resolvers.

// DNSPort is where the resolver listens, on the node's VPN address.
const DNSPort = 53

func (d *Daemon) openNames() {
	self, _ := netip.ParseAddr(d.cfg.VPNIP)
	d.names = resolver.New(resolver.Options{
		Allow:     func(a netip.Addr) bool { return a == self || a.IsLoopback() },
		Upstreams: func() []string { return d.upstreams(self) },
		Logger:    d.log,
	})
}

// upstreams are the system's resolvers, other than this node's own: those
// of the resolv.conf from before wire, if wire replaced it.
func (d *Daemon) upstreams(self netip.Addr) []string {
	path := d.resolvConf
	if up := d.sysdns.Upstream(); up != "" {
		path = up
	}
	if path == "" {
		return nil
	}
	return resolver.Upstreams(path, self)
}

// setSystemDNS points the system's resolver at this node's for the
// mesh's names, or, with --accept-dns=false, makes sure nothing of wire's
// is left there (from a run with it, or a crash). A failure is logged:
// the tunnels do not depend on it.
func (d *Daemon) setSystemDNS() {
	d.mu.Lock()
	accept, domain := d.cfg.acceptDNS(), d.cfg.Domain()
	d.mu.Unlock()
	self, err := netip.ParseAddr(d.cfg.VPNIP)
	if !accept || err != nil {
		d.revertSystemDNS()
		return
	}
	cfg := sysdns.Config{Interface: d.engine.Name(), Nameserver: self, Domain: domain}
	if err := d.sysdns.Set(cfg); err != nil {
		d.log.Warn("DNS: could not point the system at wire's resolver; NAME."+domain+" works only for whoever asks "+self.String()+" directly", "err", err)
		return
	}
	d.log.Info("DNS: the system asks wire for "+domain, "how", d.sysdns.Mode(), "resolver", self)
}

// revertSystemDNS puts the system's resolver settings back.
func (d *Daemon) revertSystemDNS() {
	if err := d.sysdns.Revert(); err != nil {
		d.log.Warn("DNS: could not put the system's resolver settings back", "err", err)
	}
}

// setNames declares the mesh's names to the resolver.
func (d *Daemon) setNames() {
	d.mu.Lock()
	names := make(map[string]netip.Addr, len(d.peers)+1)
	for _, p := range d.peers {
		if a, err := netip.ParseAddr(p.VPNIP); err == nil {
			names[p.NodeName] = a
		}
	}
	if a, err := netip.ParseAddr(d.cfg.VPNIP); err == nil {
		names[d.cfg.NodeName] = a
	}
	domain := d.cfg.Domain()
	// Under d.mu, so that an Update of a later merge cannot come first.
	d.names.Set(domain, names)
	d.mu.Unlock()
}

// dnsName is a node's name in the mesh's DNS.
func (d *Daemon) dnsName(node string) string {
	return strings.ToLower(node) + "." + d.cfg.Domain()
}

// withDNSNames adds each peer's DNS name.
func (d *Daemon) withDNSNames(peers []PeerStatus) {
	for i, p := range peers {
		peers[i].DNSName = d.dnsName(p.NodeName)
	}
}

// serveNames runs the resolver on UDP and TCP until ctx ends, listening
// again whenever the address goes (the interface is replaced).
func (d *Daemon) serveNames(ctx context.Context) {
	addr := net.JoinHostPort(d.cfg.VPNIP, strconv.Itoa(DNSPort))
	warned := false
	for ctx.Err() == nil {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		var ln net.Listener
		if err == nil {
			if ln, err = lc.Listen(ctx, "tcp", addr); err != nil {
				pc.Close()
			}
		}
		if err != nil {
			if !warned {
				d.log.Info("DNS: cannot listen yet (is another DNS server bound to all addresses?); retrying", "addr", addr, "err", err)
				warned = true
			}
			sleep(ctx, 2*time.Second)
			continue
		}
		warned = false
		if err := d.serveDNS(ctx, pc, ln); err != nil && ctx.Err() == nil {
			d.log.Warn("DNS: listener failed; listening again", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// serveDNS serves both sockets until one fails or ctx ends; then both
// close.
func (d *Daemon) serveDNS(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- d.names.Serve(ctx, pc); cancel() }()
	go func() { errs <- d.names.ServeTCP(ctx, ln); cancel() }()
	err := <-errs
	if err2 := <-errs; err == nil {
		err = err2
	}
	return err
}
