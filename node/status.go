package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Status is what `wire status --json` prints and `wire_status` returns:
// the seed's /status shape for the mesh (version, total, online, offline,
// nodes), and this node's own facts and each peer's path.
type Status struct {
	// Version is the server's, as its /status says; "" while it cannot be
	// reached.
	Version string `json:"version"`
	// Nodes is the server's node list, this node included, as the seed's
	// /status has it; while the server cannot be reached, this node and
	// the cached peers, with status unknown.
	Nodes     []api.NodeStatus `json:"nodes"`
	NodeName  string           `json:"node_name"`
	VPNIP     string           `json:"vpn_ip"`
	PublicIP  string           `json:"public_ip"`
	NATPort   int              `json:"nat_port"`
	ServerURL string           `json:"server_url"` // the server in use
	// OtherServers are the mesh's other servers, for failover.
	OtherServers    []string `json:"other_servers,omitempty"`
	ServerReachable bool     `json:"server_reachable"`
	Interface       string   `json:"interface"`
	Engine          string   `json:"engine"`
	ListenPort      int      `json:"listen_port"`
	WGPublicKey     string   `json:"wg_public_key"`
	Relay           string   `json:"relay"` // up, up over tcp, down or unsupported
	// Removed says the server does not know this node any more (its
	// admin removed it); Advice then says how to join again.
	Removed bool `json:"removed"`
	// Expired says the node's enrolment expired (see wire server key
	// create --expire); Advice then says how to authenticate again.
	Expired bool   `json:"expired,omitempty"`
	Advice  string `json:"advice,omitempty"`
	Total   int    `json:"total"`
	// Online counts this node and the peers the server says are online;
	// while it cannot be reached, the peers whose tunnel has a fresh
	// handshake.
	Online  int          `json:"online"`
	Offline int          `json:"offline"`
	Peers   []PeerStatus `json:"peers"`
	// Identity is the node's identity key, with which it signs messages.
	Identity Identity `json:"identity"`
}

// PeerStatus is one other node as this node sees it.
type PeerStatus struct {
	NodeID   string `json:"node_id,omitempty"`
	NodeName string `json:"node_name"`
	// DNSName is the name that resolves to the peer's VPN address on
	// this node (NAME.DOMAIN).
	DNSName  string `json:"dns_name,omitempty"`
	VPNIP    string `json:"vpn_ip"`
	PublicIP string `json:"public_ip"`
	// Status is the server's view: online, offline, or unknown while the
	// server cannot be reached.
	Status      string `json:"status"`
	LastSeenAgo int64  `json:"last_seen_ago"`
	// Path is how traffic to the peer flows: direct, relay, relay-tcp
	// (see PathRelayTCP), idle (see PathIdle) or none.
	Path string `json:"path"`
	// Why says, on the relay, why: the direct probes that failed, since
	// when, and the punch attempts the server counts.
	Why             string     `json:"why,omitempty"`
	Endpoint        string     `json:"endpoint,omitempty"`
	LatestHandshake *time.Time `json:"latest_handshake"`
	RxBytes         int64      `json:"rx_bytes"`
	TxBytes         int64      `json:"tx_bytes"`
	WGPublicKey     string     `json:"wg_public_key,omitempty"`
	// Tier is this node's trust in the peer's identity key: introduced,
	// verified or blocked.
	Tier string `json:"tier,omitempty"`
	// KeyAlert says the server presents another key than the verified one.
	KeyAlert string `json:"key_alert,omitempty"`
	// Accepts is, when the mesh has a policy, what the peer may send this
	// node besides replies ("tcp:22", "*:443", "icmp"; empty: nothing);
	// nil without a policy: anything.
	Accepts *[]string `json:"accepts,omitempty"`
}

// Paths.
const (
	PathDirect = "direct"
	PathRelay  = "relay"
	// PathRelayTCP is the relay where this node or the peer reaches it
	// over TCP, its UDP being blocked: slower than over UDP.
	PathRelayTCP = "relay-tcp"
	PathNone     = "none"
	// PathIdle is a peer without traffic for a while, which the engine
	// holds back from WireGuard until a packet goes to it or comes from it
	// (the userspace engine; see wg's lazy.go). Its path is decided again
	// when it wakes.
	PathIdle = "idle"
)

// Tunnelled says whether a path carries the peer's traffic now.
func Tunnelled(path string) bool {
	return path == PathDirect || path == PathRelay || path == PathRelayTCP
}

// Status gathers the node's view: the server's node list (if it answers
// within a moment) joined with WireGuard's live state.
func (d *Daemon) Status(ctx context.Context) Status {
	st := d.status(ctx)
	d.withTrust(ctx, st.Peers)
	d.withDNSNames(st.Peers)
	st.Identity = d.identity()
	return st
}

func (d *Daemon) status(ctx context.Context) Status {
	srv, err := d.serverStatus(ctx)
	live := d.live()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{
		NodeName: d.cfg.NodeName, VPNIP: d.cfg.VPNIP, PublicIP: d.publicIP, NATPort: int(d.mapped.Port()),
		ServerURL: d.client.URL(), OtherServers: others(d.cfg.Servers(), d.client.URL()), ServerReachable: d.reachable, Interface: d.engine.Name(), Engine: d.engine.Kind(),
		ListenPort: d.cfg.ListenPort, WGPublicKey: d.keys.WG.PublicKey().String(), Peers: []PeerStatus{},
		Relay: d.relay.String(), Removed: d.removed, Expired: d.expired,
	}
	switch {
	case d.expired:
		st.Advice = ErrExpired.Error()
	case d.removed:
		st.Advice = ErrRemoved.Error()
	}
	byName := map[string]api.Peer{}
	for _, p := range d.peers {
		byName[p.NodeName] = p
	}
	if err == nil {
		st.Version, st.Nodes = srv.Version, srv.Nodes
		for _, n := range srv.Nodes {
			if n.NodeName == d.cfg.NodeName {
				continue
			}
			ps := d.peerStatus(byName[n.NodeName], live)
			ps.NodeName, ps.VPNIP, ps.PublicIP, ps.Status, ps.LastSeenAgo = n.NodeName, n.VPNIP, n.PublicIP, n.Status, n.LastSeenAgo
			st.Peers = append(st.Peers, ps)
		}
	} else {
		st.Nodes = []api.NodeStatus{{NodeName: st.NodeName, VPNIP: st.VPNIP, PublicIP: st.PublicIP, NATPort: st.NATPort, Status: "online"}}
		for _, p := range d.peers {
			ps := d.peerStatus(p, live)
			ps.Status, ps.LastSeenAgo = "unknown", -1
			st.Peers = append(st.Peers, ps)
			st.Nodes = append(st.Nodes, api.NodeStatus{NodeName: p.NodeName, VPNIP: p.VPNIP, PublicIP: p.PublicIP, NATPort: p.NATPort, Status: "unknown", LastSeenAgo: -1})
		}
		sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].NodeName < st.Nodes[j].NodeName })
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].NodeName < st.Peers[j].NodeName })
	st.Total = len(st.Peers) + 1
	st.Online = 1
	for _, p := range st.Peers {
		switch {
		case p.Status == "online", p.Status == "unknown" && Tunnelled(p.Path): // without the server, the tunnel tells
			st.Online++
		case p.Status == "offline":
			st.Offline++
		}
	}
	return st
}

// serverStatus asks the server for its node list, giving it a moment.
func (d *Daemon) serverStatus(ctx context.Context) (api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	srv, err := d.client.Status(ctx)
	d.setReachable(err)
	return srv, err
}

// Peers lists the peers WireGuard is configured with, with the server's
// view of each (online, offline, or unknown while it cannot be reached).
func (d *Daemon) Peers(ctx context.Context) []PeerStatus {
	out := d.peerList(ctx)
	d.withTrust(ctx, out)
	d.withDNSNames(out)
	return out
}

func (d *Daemon) peerList(ctx context.Context) []PeerStatus {
	srv, err := d.serverStatus(ctx)
	seen := map[string]api.NodeStatus{}
	for _, n := range srv.Nodes {
		seen[n.NodeName] = n
	}
	out := d.localPeers()
	for i, ps := range out {
		out[i].Status, out[i].LastSeenAgo = "unknown", -1
		if n, ok := seen[ps.NodeName]; ok && err == nil {
			out[i].Status, out[i].LastSeenAgo = n.Status, n.LastSeenAgo
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeName < out[j].NodeName })
	return out
}

func (d *Daemon) live() map[wg.Key]wg.PeerStatus {
	m := map[wg.Key]wg.PeerStatus{}
	stats, err := d.engine.Peers()
	if err != nil && !errors.Is(err, net.ErrClosed) { // closed: going down
		d.log.Warn("reading WireGuard state", "err", err)
	}
	for _, s := range stats {
		m[s.PublicKey] = s
	}
	return m
}

// peerStatus fills what WireGuard knows of p, and which path its traffic
// takes: the relay if its endpoint is the relay's and the relay is up,
// direct if the direct path answered its last probes; either only while
// the peer's handshake is fresh. Callers hold d.mu.
func (d *Daemon) peerStatus(p api.Peer, live map[wg.Key]wg.PeerStatus) PeerStatus {
	ps := PeerStatus{NodeID: p.NodeID, NodeName: p.NodeName, VPNIP: p.VPNIP, PublicIP: p.PublicIP, Path: PathNone, WGPublicKey: p.WGPublicKey,
		Why: d.paths[p.NodeID].why()}
	if p.Filter != nil {
		accepts := append([]string{}, p.Filter.Accept...)
		ps.Accepts = &accepts
	}
	key, err := wgtypes.ParseKey(p.WGPublicKey)
	if err != nil {
		return ps
	}
	s, ok := live[key]
	if !ok {
		return ps
	}
	ps.RxBytes, ps.TxBytes = s.RxBytes, s.TxBytes
	if s.Endpoint.IsValid() {
		ps.Endpoint = s.Endpoint.String()
	}
	if s.Idle {
		ps.Path = PathIdle
		return ps
	}
	if s.LastHandshake.IsZero() {
		return ps
	}
	hs := s.LastHandshake.UTC().Truncate(time.Second)
	ps.LatestHandshake = &hs
	if time.Since(s.LastHandshake) >= Stale {
		return ps
	}
	_, relayed := wg.IsRelayEndpoint(s.Endpoint)
	pa := d.paths[p.NodeID]
	switch {
	case relayed && d.relay.up && (d.relay.tcp || p.RelayTCP):
		ps.Path = PathRelayTCP
	case relayed && d.relay.up:
		ps.Path = PathRelay
	case !relayed && (pa == nil || pa.probeErr || time.Since(pa.lastOK) < time.Duration(relayAfter)*probeEvery+probeTimeout):
		ps.Path = PathDirect
	}
	return ps
}

func (r relayState) String() string {
	switch {
	case r.unsupported:
		return "unsupported"
	case r.up && r.tcp:
		return "up over tcp"
	case r.up:
		return "up"
	}
	return "down"
}

// resolve finds a peer by name (in any case) or VPN address, or this node
// itself.
func (d *Daemon) resolve(target string) (api.Peer, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	addr, aerr := netip.ParseAddr(target)
	if strings.EqualFold(target, d.cfg.NodeName) || (aerr == nil && addr.String() == d.cfg.VPNIP) {
		return api.Peer{NodeID: d.cfg.NodeID, NodeName: d.cfg.NodeName, VPNIP: d.cfg.VPNIP}, true
	}
	for _, p := range d.peers {
		if strings.EqualFold(p.NodeName, target) || (aerr == nil && p.VPNIP == addr.String()) {
			return p, true
		}
	}
	return api.Peer{}, false
}

// others are the servers other than the one in use.
func others(all []string, inUse string) []string {
	var out []string
	for _, u := range all {
		if u != inUse {
			out = append(out, u)
		}
	}
	return out
}
