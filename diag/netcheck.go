package diag

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/stun"
)

// Netcheck is what wire netcheck reports: this node's network as its
// server sees it, and what that means for direct connections.
type Netcheck struct {
	Server string `json:"server"`
	HTTPS  Probe  `json:"https" jsonschema:"the server's API over TCP"`
	STUN   Probe  `json:"stun" jsonschema:"the server's STUN port over UDP, and the public address it saw"`
	Relay  Probe  `json:"relay" jsonschema:"the server's relay port over UDP (it answers STUN too), and the public address it saw"`
	UDP    bool   `json:"udp" jsonschema:"whether UDP to the server works at all"`
	// NAT is none (the public address is this machine's own),
	// endpoint-independent (one public address for every destination),
	// symmetric (a public address per destination) or unknown.
	NAT     string `json:"nat" jsonschema:"none, endpoint-independent, symmetric or unknown"`
	Verdict string `json:"verdict" jsonschema:"what this network means for direct connections"`
}

// Probe is one question to the server: whether it was answered, in how
// long, and for the UDP ones the public address it saw.
type Probe struct {
	Addr   string  `json:"addr"`
	OK     bool    `json:"ok"`
	RTTMs  float64 `json:"rtt_ms,omitempty"`
	Mapped string  `json:"mapped,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// NAT kinds, as Netcheck.NAT gives them.
const (
	NATNone        = "none"
	NATIndependent = "endpoint-independent"
	NATSymmetric   = "symmetric"
	NATUnknown     = "unknown"
)

// udpWait bounds each STUN question, retransmissions included.
const udpWait = 2 * time.Second

// CheckNetwork asks the server of cfg over HTTPS where its STUN and relay
// are, then asks both from one UDP socket for this machine's public
// address: two destinations that see two addresses mean a symmetric NAT.
func CheckNetwork(ctx context.Context, cfg node.Config) Netcheck {
	nc := Netcheck{Server: cfg.ServerURL, NAT: NATUnknown}
	var stunPort, relayPort int
	nc.HTTPS, stunPort, relayPort = checkHTTPS(ctx, cfg, cfg.STUNPort)
	host, err := serverHost(ctx, cfg.ServerURL)
	if err != nil {
		nc.STUN.Error, nc.Relay.Error = err.Error(), err.Error()
		nc.Verdict = verdict(nc)
		return nc
	}
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		nc.STUN.Error = err.Error()
		nc.Verdict = verdict(nc)
		return nc
	}
	defer conn.Close()
	if stunPort != 0 {
		nc.STUN = askSTUN(ctx, conn, netip.AddrPortFrom(host, uint16(stunPort)))
	} else {
		nc.STUN.Error = "the server's STUN port is not known: its API did not answer, and the config does not say"
	}
	if relayPort != 0 {
		nc.Relay = askSTUN(ctx, conn, netip.AddrPortFrom(host, uint16(relayPort)))
	} else {
		nc.Relay.Error = "the server does not say where its relay is (an older or --open server)"
	}
	nc.UDP = nc.STUN.OK || nc.Relay.OK
	nc.NAT = natKind(nc)
	nc.Verdict = verdict(nc)
	return nc
}

// checkHTTPS asks the server's /health, which says where its STUN and
// relay listen; it returns those ports (stunPort, 0 if not said).
func checkHTTPS(ctx context.Context, cfg node.Config, stunPort int) (Probe, int, int) {
	p := Probe{Addr: cfg.ServerURL}
	cc := api.ClientConfig{URL: cfg.ServerURL}
	if cfg.ServerPin != "" {
		pin, err := api.ParsePin(cfg.ServerPin)
		if err != nil {
			p.Error = err.Error()
			return p, stunPort, 0
		}
		cc.Pin = pin
	}
	c, err := api.NewClient(cc)
	if err != nil {
		p.Error = err.Error()
		return p, stunPort, 0
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	h, err := c.Health(hctx)
	if err != nil {
		p.Error = err.Error()
		return p, stunPort, 0
	}
	p.OK, p.RTTMs = true, ms(time.Since(start))
	if h.STUNPort != 0 {
		stunPort = h.STUNPort
	}
	return p, stunPort, h.RelayPort
}

// serverHost is the address of the server's host, as UDP reaches it.
func serverHost(ctx context.Context, serverURL string) (netip.Addr, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return netip.Addr{}, err
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("cannot resolve %s: %v", u.Hostname(), err)
	}
	return addrs[0].Unmap(), nil
}

func askSTUN(ctx context.Context, conn *net.UDPConn, to netip.AddrPort) Probe {
	p := Probe{Addr: to.String()}
	qctx, cancel := context.WithTimeout(ctx, udpWait)
	defer cancel()
	start := time.Now()
	mapped, err := stun.Query(qctx, conn, net.UDPAddrFromAddrPort(to))
	if err != nil {
		p.Error = "no answer within " + udpWait.String()
		if ctx.Err() == nil && qctx.Err() == nil {
			p.Error = err.Error()
		}
		return p
	}
	p.OK, p.RTTMs, p.Mapped = true, ms(time.Since(start)), mapped.String()
	return p
}

// natKind reads the kind of NAT from the two mappings.
func natKind(nc Netcheck) string {
	switch {
	case !nc.STUN.OK || !nc.Relay.OK:
		return NATUnknown
	case nc.STUN.Mapped != nc.Relay.Mapped:
		return NATSymmetric
	case isLocal(nc.STUN.Mapped):
		return NATNone
	}
	return NATIndependent
}

// isLocal says whether the address of the mapping host:port is one of
// this machine's own.
func isLocal(mapped string) bool {
	ap, err := netip.ParseAddrPort(mapped)
	if err != nil {
		return false
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ap.Addr().Unmap() {
			return true
		}
	}
	return false
}

func verdict(nc Netcheck) string {
	switch {
	case !nc.UDP && !nc.HTTPS.OK:
		return "the server cannot be reached: check the network, and that wire server runs at " + nc.Server
	case !nc.UDP:
		return "UDP to the server is blocked or lost: this node can neither learn its public address nor use the relay, so it has no path to peers behind NATs"
	case nc.NAT == NATNone:
		return "this machine has a public address: peers connect to it directly"
	case nc.NAT == NATIndependent:
		return "one public address for every destination: direct connections work with peers behind most NATs (hole punching)"
	case nc.NAT == NATSymmetric:
		return "the NAT gives each destination its own public port: hole punching fails with peers behind NATs of their own, whose traffic goes through the relay; peers with a public address or a friendly NAT may still connect directly"
	}
	return "only one of the server's UDP ports answered: the NAT's kind is not known; peers may need the relay"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Where says where a Probe's time and address come from, for a person.
func (p Probe) Where() string {
	if !p.OK {
		return p.Addr + ": " + p.Error
	}
	s := p.Addr + " answers in " + strconv.FormatFloat(p.RTTMs, 'f', 1, 64) + " ms"
	if p.Mapped != "" {
		s += ": this node is " + p.Mapped
	}
	return s
}
